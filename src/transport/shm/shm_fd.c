/*
 * shm_fd.c - checks of the descriptors a shm:// peer hands us at the
 * handshake, before we map or write to any of them.
 *
 * A memfd we are going to map must stay at least as large as our mapping,
 * or touching the mapping raises SIGBUS. So the seals are read first: once
 * F_SEAL_SHRINK is set the size can only grow, and a size read after that
 * is a floor. Read the other way round, a peer could shrink the file
 * between the two reads and seal it afterwards. The first call is
 * F_GET_SEALS because it answers from the inode without calling into any
 * file system: it fails for everything but shmem and hugetlbfs files, so no
 * later call (fstatfs, fstat) can block on a file served by the peer (a
 * FUSE mount it runs, say). Then the file system must be tmpfs, where
 * memfds live: a hugetlbfs memfd is also sealable, but its pages come from
 * a pool that can run dry at fault time, and that is a SIGBUS too.
 */
#include "shm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>

int fy_shm_check_memfd(int fd, size_t size)
{
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return FERRY_EPROTO;
    struct statfs sfs;
    if (fstatfs(fd, &sfs) != 0 || sfs.f_type != TMPFS_MAGIC)
        return FERRY_EPROTO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
        return FERRY_EPROTO;
    return 0;
}

int fy_shm_check_event_sock(int fd)
{
    /* SO_TYPE first: it fails on anything but a socket without touching
     * the file, and we only ever send() to it with MSG_DONTWAIT, which
     * cannot block whatever the peer does with its end. */
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM)
        return FERRY_EPROTO;
    return 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL: then lazily */
#endif

void shm_populate(void *addr, size_t len, int present_only)
{
    if (len > SHM_POPULATE_MAX + FY_RING_HDR) /* a ring of up to 16 MiB, with its header */
        return;
    /* madvise wants a page-aligned start: the pages the range touches (a
     * ring starts just past the connection header, inside the mapping) */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)addr & ~(page - 1);
    uintptr_t end = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
    if (present_only) {
        size_t n = (end - start) / page;
        unsigned char *vec = malloc(n);
        int all = vec != NULL && mincore((void *)start, end - start, vec) == 0;
        for (size_t i = 0; all && i < n; i++)
            all = vec[i] & 1;
        free(vec);
        if (!all)
            return;
    }
    /* EINVAL: a kernel before 5.14, the writes below fault the pages in;
     * any other failure (ENOMEM at a memory limit): leave them lazy */
    if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) != 0 && errno != EINVAL)
        return;
    /* and written: on this VM a page populated but never written still
     * cost 10-20 us at its first store (measured: 2,000 slow round trips
     * on a 4 MiB ring's first lap with the madvise alone, 95 with this).
     * An atomic add of 0 writes without changing a byte the peer may be
     * writing at the same time. */
    for (uintptr_t a = start; a < end; a += page)
        atomic_fetch_add_explicit((_Atomic unsigned char *)a, 0, memory_order_relaxed);
}
