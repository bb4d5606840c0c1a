/*
 * raw_shm.h - test helpers that play an shm:// peer by hand on a
 * listener's control socket (the abstract "@ferry/shm/NAME", SOCK_SEQPACKET,
 * struct shm_ctl messages with descriptors beside them), so a test can send
 * what no well-behaved peer would. Shared by the shm:// tests.
 */
#ifndef FERRY_TEST_RAW_SHM_H
#define FERRY_TEST_RAW_SHM_H

#include "common.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "transport/shm/shm_int.h"

static inline socklen_t raw_shm_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "ferry/shm/%s", name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* A connected control socket to NAME's listener, or -1. */
static inline int raw_shm_connect(const char *name)
{
    struct sockaddr_un sa;
    socklen_t sl = raw_shm_addr(&sa, name);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sl) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A listener bound at NAME (a fake one), or -1. */
static inline int raw_shm_listen(const char *name)
{
    struct sockaddr_un sa;
    socklen_t sl = raw_shm_addr(&sa, name);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 8) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Reads one control message, closing any descriptors that came with it;
 * its size, 0 at EOF, -1 when nothing came within 10 s. */
static inline ssize_t raw_shm_read(int fd, struct shm_ctl *c)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1)
        return -1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = c, .iov_len = sizeof *c};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t n = recvmsg(fd, &mh, 0);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
        int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + (size_t)i * sizeof(int), sizeof f);
            close(f);
        }
    }
    return n;
}

/* Sends one control message with up to 4 descriptors; sendmsg's result. */
static inline ssize_t raw_shm_send(int fd, const struct shm_ctl *c, const int *fds, int nfds)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } cu;
    memset(&cu, 0, sizeof cu);
    struct iovec iov = {.iov_base = (void *)c, .iov_len = sizeof *c};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        mh.msg_control = cu.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

#endif /* FERRY_TEST_RAW_SHM_H */
