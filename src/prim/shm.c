/*
 * shm.c - named shared-memory regions: name checks, atomic creation, header
 * validation on open.
 *
 * Why O_TMPFILE: shm_open(O_CREAT) makes the name visible before the
 * creator has sized and initialised the object, so an opener can see a
 * zero-length or half-written region, and a creator killed in between
 * leaves debris. Instead the object is created unnamed in /dev/shm, sized,
 * given its header, initialised by the caller's callback, and only then
 * linked under its name (linkat fails with EEXIST if somebody was first,
 * which is also how FERRY_EXCL is enforced). Where O_TMPFILE is missing we
 * fall back to a temporary name and link(2), which has the same
 * all-or-nothing property for the final name.
 */
#include "region.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int ferry_name_check(const char *name)
{
    if (name == NULL)
        return FERRY_EBADNAME;
    size_t len = strnlen(name, FERRY_NAME_MAX + 1);
    if (len == 0 || len > FERRY_NAME_MAX || name[0] == '.')
        return FERRY_EBADNAME;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return FERRY_EBADNAME;
    }
    if (strstr(name, "..") != NULL)
        return FERRY_EBADNAME;
    return 0;
}

void fy_region_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s%s", FY_SHM_DIR, FY_SHM_PREFIX, name);
}

/* Checks a header read from an object of st_size bytes. */
static int region_check_hdr(const struct fy_region_hdr *h, size_t got, off_t st_size)
{
    if (got < sizeof h->magic || memcmp(h->magic, FY_REGION_MAGIC, 8) != 0)
        return FERRY_EFOREIGN;
    if (got < sizeof *h)
        return FERRY_EDAMAGED;
    if (h->version != FY_REGION_VERSION)
        return FERRY_EVERSION;
    if (h->hdr_size != FY_REGION_HDR_SIZE || h->size > (uint64_t)INT64_MAX - FY_REGION_HDR_SIZE ||
        (uint64_t)st_size != h->size + FY_REGION_HDR_SIZE)
        return FERRY_EDAMAGED;
    return 0;
}

static int region_read_hdr(int fd, const char *path, struct fy_region_hdr *h, struct stat *st)
{
    if (fstat(fd, st) != 0)
        return fy_syserr("stat %s", path);
    if (!S_ISREG(st->st_mode))
        return fy_err(FERRY_EFOREIGN, "%s", path);
    memset(h, 0, sizeof *h);
    ssize_t n = pread(fd, h, sizeof *h, 0);
    if (n < 0)
        return fy_syserr("read %s", path);
    int rc = region_check_hdr(h, (size_t)n, st->st_size);
    if (rc == FERRY_EDAMAGED)
        return fy_err(rc, "%s: %lld bytes, header says %llu + %u", path, (long long)st->st_size,
                      (unsigned long long)h->size, h->hdr_size);
    if (rc != 0)
        return fy_err(rc, "%s", path);
    return 0;
}

int fy_region_peek(const char *name, struct fy_region_hdr *hdr, struct stat *st)
{
    return fy_region_peek_user(name, hdr, st, NULL, 0);
}

int fy_region_peek_user(const char *name, struct fy_region_hdr *hdr, struct stat *st, void *user,
                        size_t len)
{
    char path[256];
    int rc = ferry_name_check(name);
    if (rc != 0)
        return fy_err(rc, "'%.*s'", FERRY_NAME_MAX, name ? name : "(null)");
    fy_region_path(path, sizeof path, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        memset(st, 0, sizeof *st);
        int err = -errno;
        if (err == FERRY_EACCES || err == FERRY_EPERM)
            (void)lstat(path, st); /* owner and mode are still worth showing */
        return fy_err(err, "open %s", path);
    }
    rc = region_read_hdr(fd, path, hdr, st);
    if (rc == 0 && len > 0) {
        ssize_t n = hdr->size >= len ? pread(fd, user, len, FY_REGION_HDR_SIZE) : 0;
        if (n != (ssize_t)len)
            rc = fy_err(FERRY_EDAMAGED, "%s: user area shorter than %zu bytes", path, len);
    }
    close(fd);
    return rc;
}

/* The owner check of an existing object: the caller's effective uid, root,
 * or the uid the caller named. */
static int region_owner_ok(const struct stat *st, int64_t owner_uid, const char *path)
{
    if (st->st_uid == geteuid() || st->st_uid == 0 || owner_uid == FERRY_OWNER_ANY ||
        (owner_uid >= 0 && (int64_t)st->st_uid == owner_uid))
        return 0;
    return fy_err(FERRY_EOWNER,
                  "%s belongs to uid %u, not to uid %u or root (see ferry_shm_open_ex)", path,
                  (unsigned)st->st_uid, (unsigned)geteuid());
}

static int region_map(ferry_shm *h, int fd, const char *path)
{
    void *p = mmap(NULL, h->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return fy_syserr("mmap %s (%zu bytes)", path, h->map_len);
    h->base = p;
    return 0;
}

static int region_open_existing(ferry_shm *h, const char *path, ferry_kind kind, size_t size,
                                int64_t owner_uid)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return fy_syserr("open %s", path);
    struct fy_region_hdr hdr;
    struct stat st;
    int rc = region_read_hdr(fd, path, &hdr, &st);
    if (rc == 0) {
        h->owner = st.st_uid;
        rc = region_owner_ok(&st, owner_uid, path);
    }
    if (rc == 0 && hdr.kind != (uint32_t)kind)
        rc = fy_err(FERRY_EKIND, "%s is a %s", path,
                    hdr.kind == FERRY_KIND_SEM      ? "semaphore"
                    : hdr.kind == FERRY_KIND_REGION ? "region"
                                                    : "ferry object of another kind");
    if (rc == 0 && size != 0 && hdr.size != size)
        rc = fy_err(FERRY_ESIZE, "%s has %llu bytes, not %zu", path, (unsigned long long)hdr.size,
                    size);
    if (rc == 0 && hdr.size > SIZE_MAX - FY_REGION_HDR_SIZE)
        rc = fy_err(FERRY_ENOMEM, "%s is too large to map", path);
    if (rc == 0) {
        h->size = (size_t)hdr.size;
        h->map_len = h->size + FY_REGION_HDR_SIZE;
        h->flags = hdr.flags;
        rc = region_map(h, fd, path);
    }
    close(fd);
    return rc;
}

/* Creates the object unnamed, initialises it, links it under path. Returns
 * FERRY_EEXIST (without detail) when the name was taken meanwhile. */
static int region_create(ferry_shm *h, const char *path, ferry_kind kind, size_t size,
                         uint32_t hdr_flags, const ferry_shm_opts *opts)
{
    unsigned mode = (opts && opts->mode) ? (opts->mode & 07777) : 0600;
    char tmp[256] = "";
    int rc = 0;

    if (size == 0)
        return fy_err(FERRY_EINVAL, "create %s: size 0", path);
    if (size > (size_t)INT64_MAX - FY_REGION_HDR_SIZE)
        return fy_err(FERRY_EINVAL, "create %s: size %zu too large", path, size);

    int fd = open(FY_SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        static _Atomic unsigned counter;
        snprintf(tmp, sizeof tmp, "%s/.ferry-tmp.%d.%u", FY_SHM_DIR, (int)getpid(), counter++);
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    }
    if (fd < 0)
        return fy_syserr("create in %s", FY_SHM_DIR);
    if (fchmod(fd, mode) != 0) { /* the umask must not change what was asked */
        rc = fy_syserr("chmod %s", path);
        goto fail;
    }
    h->size = size;
    h->map_len = size + FY_REGION_HDR_SIZE;
    if (ftruncate(fd, (off_t)h->map_len) != 0) {
        rc = fy_syserr("size %s to %zu bytes", path, h->map_len);
        goto fail;
    }
    rc = region_map(h, fd, path);
    if (rc != 0)
        goto fail;

    struct fy_region_hdr *hdr = h->base;
    memcpy(hdr->magic, FY_REGION_MAGIC, 8);
    hdr->version = FY_REGION_VERSION;
    hdr->kind = (uint32_t)kind;
    hdr->size = size;
    hdr->hdr_size = FY_REGION_HDR_SIZE;
    hdr->creator_pid = (int32_t)getpid();
    hdr->creator_start = fy_proc_starttime(getpid());
    hdr->created_ns = fy_now_real_ns();
    hdr->flags = hdr_flags;
    h->flags = hdr_flags;

    if (opts && opts->init) {
        rc = opts->init((char *)h->base + FY_REGION_HDR_SIZE, size, opts->init_arg);
        if (rc != 0) {
            if (rc > 0)
                rc = FERRY_EINVAL;
            if (ferry_errdetail()[0] == '\0')
                fy_err(rc, "initialise %s", path);
            goto fail;
        }
    }

    if (tmp[0] == '\0') {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0)
            rc = errno == EEXIST ? FERRY_EEXIST : fy_syserr("link %s", path);
    } else {
        if (link(tmp, path) != 0)
            rc = errno == EEXIST ? FERRY_EEXIST : fy_syserr("link %s", path);
        unlink(tmp);
        tmp[0] = '\0';
    }
    if (rc != 0)
        goto fail;
    close(fd);
    h->created = 1;
    h->owner = geteuid();
    return 0;

fail:
    if (h->base != NULL)
        munmap(h->base, h->map_len);
    h->base = NULL;
    if (tmp[0] != '\0')
        unlink(tmp);
    close(fd);
    return rc;
}

int fy_region_open(ferry_shm **out, const char *name, ferry_kind kind, size_t size, int flags,
                   uint32_t hdr_flags, const ferry_shm_opts *opts, int64_t owner_uid)
{
    char path[256];
    int rc;

    fy_err_clear();
    if (out == NULL)
        return fy_err(FERRY_EINVAL, "open: no handle pointer");
    *out = NULL;
    rc = ferry_name_check(name);
    if (rc != 0)
        return fy_err(rc, "'%.*s'", FERRY_NAME_MAX, name ? name : "(null)");
    if (flags & ~(FERRY_CREATE | FERRY_EXCL | FERRY_SEM_UNDO))
        return fy_err(FERRY_EINVAL, "open %s: unknown flags 0x%x", name, (unsigned)flags);
    fy_region_path(path, sizeof path, name);

    ferry_shm *h = calloc(1, sizeof *h);
    if (h == NULL)
        return fy_err(FERRY_ENOMEM, "open %s", path);
    memcpy(h->name, name, strlen(name) + 1);

    /* Open-or-create races with other creators: whoever links first wins
     * and the others open the winner's object. Bounded, because an object
     * that keeps appearing and vanishing is somebody else's bug. */
    rc = FERRY_ENOENT;
    for (int attempt = 0; attempt < 8; attempt++) {
        if (!(flags & FERRY_CREATE) || !(flags & FERRY_EXCL)) {
            rc = region_open_existing(h, path, kind, size, owner_uid);
            if (rc != FERRY_ENOENT || !(flags & FERRY_CREATE))
                break;
        }
        fy_err_clear();
        rc = region_create(h, path, kind, size, hdr_flags, opts);
        if (rc != FERRY_EEXIST)
            break;
        if (flags & FERRY_EXCL) {
            fy_err(rc, "create %s", path);
            break;
        }
    }
    if (rc != 0) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int ferry_shm_open_ex(ferry_shm **shm, const char *name, size_t size, int flags,
                      const ferry_shm_opts *opts, int64_t owner_uid)
{
    if (flags & FERRY_SEM_UNDO)
        return fy_err(FERRY_EINVAL, "shm open: FERRY_SEM_UNDO is a semaphore flag");
    if (owner_uid < FERRY_OWNER_ANY || owner_uid > UINT32_MAX)
        return fy_err(FERRY_EINVAL, "shm open: owner uid %lld", (long long)owner_uid);
    return fy_region_open(shm, name, FERRY_KIND_REGION, size, flags, 0, opts, owner_uid);
}

int ferry_shm_open(ferry_shm **shm, const char *name, size_t size, int flags,
                   const ferry_shm_opts *opts)
{
    return ferry_shm_open_ex(shm, name, size, flags, opts, (int64_t)geteuid());
}

void *ferry_shm_addr(const ferry_shm *shm)
{
    return shm ? (char *)shm->base + FY_REGION_HDR_SIZE : NULL;
}

size_t ferry_shm_size(const ferry_shm *shm) { return shm ? shm->size : 0; }

const char *ferry_shm_name(const ferry_shm *shm) { return shm ? shm->name : ""; }

int ferry_shm_created(const ferry_shm *shm) { return shm ? shm->created : 0; }

int ferry_shm_close(ferry_shm *shm)
{
    if (shm == NULL)
        return 0;
    if (shm->base != NULL)
        munmap(shm->base, shm->map_len);
    free(shm);
    return 0;
}

int ferry_shm_unlink(const char *name)
{
    struct fy_region_hdr hdr;
    struct stat st;
    char path[256];
    fy_err_clear();
    int rc = fy_region_peek(name, &hdr, &st);
    if (rc != 0)
        return rc;
    fy_region_path(path, sizeof path, name);
    if (hdr.kind != FERRY_KIND_REGION)
        return fy_err(FERRY_EKIND, "unlink %s: not a region", path);
    if (unlink(path) != 0)
        return fy_syserr("unlink %s", path);
    return 0;
}
