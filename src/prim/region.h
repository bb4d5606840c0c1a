/*
 * region.h - the layout every named ferry object starts with, and the
 * internal calls the public kinds (regions, semaphores) are built from.
 *
 * A ferry object is the file /dev/shm/ferry.NAME:
 *
 *   offset  size  field
 *        0     8  magic "FERRYSHM" (bytes in this order)
 *        8     4  layout version (FY_REGION_VERSION)
 *       12     4  kind (ferry_kind)
 *       16     8  size of the user area in bytes
 *       24     4  header size (128)
 *       28     4  creator pid
 *       32     8  creator start time (clock ticks since boot, see proc.c)
 *       40     8  creation time, CLOCK_REALTIME ns
 *       48     4  kind-specific flags (semaphores: FERRY_SEM_UNDO)
 *       52    76  reserved, zero
 *      128  size  user area (64-byte aligned)
 *
 * The header is written once, before the object gets its name, and never
 * changed; every field is still checked on open because any process with
 * write permission could have changed it.
 */
#ifndef FY_REGION_H
#define FY_REGION_H

#include "../core/fy.h"

#include <sys/stat.h>

#define FY_REGION_MAGIC "FERRYSHM"
#define FY_REGION_VERSION 1u
#define FY_REGION_HDR_SIZE 128u
#define FY_SHM_DIR "/dev/shm"
#define FY_SHM_PREFIX "ferry."

struct fy_region_hdr {
    char magic[8];
    uint32_t version;
    uint32_t kind;
    uint64_t size;
    uint32_t hdr_size;
    int32_t creator_pid;
    uint64_t creator_start;
    uint64_t created_ns;
    uint32_t flags;
    uint8_t reserved[76];
};

_Static_assert(sizeof(struct fy_region_hdr) == FY_REGION_HDR_SIZE, "region header is 128 bytes");

struct ferry_shm {
    void *base;     /* the whole mapping, header first */
    size_t map_len; /* header + user size              */
    size_t size;    /* user size                       */
    uint32_t flags; /* header flags                    */
    int created;
    uid_t owner; /* the object's owner (the file's uid) */
    char name[FERRY_NAME_MAX + 1];
};

/* Opens or creates an object of the given kind; the public ferry_shm_open()
 * is this with FERRY_KIND_REGION. hdr_flags are stored in a created
 * object's header. An existing object must belong to the caller's
 * effective uid, root, or owner_uid (FERRY_OWNER_ANY: anyone), else
 * FERRY_EOWNER. */
int fy_region_open(ferry_shm **out, const char *name, ferry_kind kind, size_t size, int flags,
                   uint32_t hdr_flags, const ferry_shm_opts *opts, int64_t owner_uid);

/* "/dev/shm/ferry.NAME" into buf; the name must have been checked. */
void fy_region_path(char *buf, size_t len, const char *name);

/* Reads and checks the header of NAME without mapping it (O_RDONLY), for
 * listing. Fills *hdr and *st; returns 0 or an error code (FERRY_EFOREIGN,
 * FERRY_EDAMAGED, FERRY_EVERSION, open errors). */
int fy_region_peek(const char *name, struct fy_region_hdr *hdr, struct stat *st);

/* fy_region_peek(), and also reads the first len bytes of the user area
 * into user, from the same open file and without mapping it (so an owner
 * that truncates it cannot make us fault). FERRY_EDAMAGED when the user
 * area is shorter than len. */
int fy_region_peek_user(const char *name, struct fy_region_hdr *hdr, struct stat *st, void *user,
                        size_t len);

/* Semaphores, for listing and removal (sem.c): removes NAME's System V
 * set when it is an undo semaphore whose set passes the owner checks;
 * reads the value and kind (*undo) without mapping the object. */
int fy_sem_remove_kernel(const char *name);
int fy_sem_peek_value(const char *name, int *undo);

#endif /* FY_REGION_H */
