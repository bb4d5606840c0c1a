/*
 * shm_ctl.c - the shm:// handshake's control messages (shm_int.h draws
 * the exchange): building, sending and receiving them with the descriptors
 * they carry, and `ferry ls`'s STAT query of a listener.
 *
 * A control message is one SOCK_SEQPACKET datagram of exactly struct
 * shm_ctl's size; anything else (short, truncated, another magic) is
 * refused before a field is read. Descriptors that arrive beyond the four
 * a message may carry are closed at once.
 */
#include "shm_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

socklen_t shm_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "ferry/shm/%s", name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

void shm_ctl_init(struct shm_ctl *c, int op, ferry_socket *s)
{
    memset(c, 0, sizeof *c);
    memcpy(c->magic, "FERRYCTL", 8);
    c->version = SHM_CTL_VERSION;
    c->op = (uint32_t)op;
    c->pid = (int32_t)getpid();
    if (s) {
        c->type = s->proto->type;
        c->ring_size = s->opt.ring_size;
        c->maxmsgsize = s->opt.maxmsgsize;
        c->rcvhwm = (uint32_t)s->opt.rcvhwm;
        c->sndhwm = (uint32_t)s->opt.sndhwm;
        if (s->proto->wire->identity && (op == SHM_OP_WELCOME || op == SHM_OP_HELLO)) {
            c->rid_len = (uint32_t)s->opt.routing_id_len;
            memcpy(c->rid, s->opt.routing_id, s->opt.routing_id_len);
        }
    }
}

/* The routing id a peer's WELCOME or HELLO announced, onto its pipe. 0,
 * or FERRY_EPROTO when it claims more than FY_RID_MAX bytes. */
int shm_ctl_peer_rid(const struct shm_ctl *c, struct fy_pipe *p)
{
    if (c->rid_len > FY_RID_MAX)
        return FERRY_EPROTO;
    p->peer_rid_len = c->rid_len;
    memcpy(p->peer_rid, c->rid, c->rid_len);
    return 0;
}

int shm_ctl_send(int fd, const struct shm_ctl *c, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)c, .iov_len = sizeof *c};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *c)
        return n < 0 ? -errno : FERRY_EIO;
    return 0;
}

/* Receives one control message and up to 4 descriptors (closing any
 * excess). Returns 0, FERRY_ECONNRESET on EOF, FERRY_EPROTO for a malformed
 * message, or -errno. */
int shm_ctl_recv(int fd, struct shm_ctl *c, int *fds, int *nfds)
{
    struct iovec iov = {.iov_base = c, .iov_len = sizeof *c};
    union {
        /* room for 4 and no more: the kernel drops any beyond them
         * itself (MSG_CTRUNC), without the close(2) that could wait on a
         * peer's file system */
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    *nfds = 0;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (*nfds < 4)
                fds[(*nfds)++] = f;
            else
                fy_close_foreign(&f, 1);
        }
    }
    if (n == 0) {
        shm_close_fds(fds, *nfds);
        *nfds = 0;
        return FERRY_ECONNRESET;
    }
    /* Another release's handshake is told apart before its size is held
     * against it (the message grew with the versions), so both ends can
     * say why they cannot talk. */
    int other = n >= 12 && memcmp(c->magic, "FERRYCTL", 8) == 0 && c->version != SHM_CTL_VERSION;
    if (other || n != (ssize_t)sizeof *c || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        memcmp(c->magic, "FERRYCTL", 8) != 0) {
        shm_close_fds(fds, *nfds);
        *nfds = 0;
        return other ? FERRY_EVERSION : FERRY_EPROTO;
    }
    c->text[sizeof c->text - 1] = '\0';
    return 0;
}

/* Waits up to the deadline for fd to be readable. */
int shm_wait_readable(int fd, uint64_t deadline)
{
    for (;;) {
        uint64_t now = fy_now_mono_ns();
        if (now >= deadline)
            return FERRY_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ms = (int)((deadline - now + 999999u) / 1000000u);
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

void shm_close_fds(int *fds, int n) { fy_close_foreign(fds, n); }

struct fy_wake *shm_map_wake(int fd)
{
    if (fy_shm_check_memfd(fd, FY_WAKE_SIZE) != 0)
        return NULL;
    /* populated: the first wake-up of the peer takes no page fault */
    void *p = mmap(NULL, FY_WAKE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void shm_refuse(int fd, ferry_socket *s, int err, const char *fmt, ...)
{
    struct shm_ctl c;
    shm_ctl_init(&c, SHM_OP_REFUSE, s);
    c.err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c.text, sizeof c.text, fmt, ap);
    va_end(ap);
    shm_ctl_send(fd, &c, NULL, 0);
    fy_err(err, "refused: %s", c.text); /* for the caller's HANDSHAKE_FAILED event */
}

/* --- `ferry ls`: live endpoints ------------------------------------------------ */

/* Asks the listener of NAME for its peers. out->pid and out->uid are the
 * listener's as the kernel reports them (SO_PEERCRED), not what it says;
 * the peers' pids are those the listener had from the kernel. */
int fy_shm_stat(const char *name, struct shm_ctl *out)
{
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    int fds[4], nfds, rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    uint64_t deadline = fy_deadline_ns(1000);
    if (connect(fd, (struct sockaddr *)&sa, sl) != 0) {
        rc = errno == ECONNREFUSED || errno == ENOENT ? FERRY_ENOENT : -errno;
        close(fd);
        return rc;
    }
    rc = shm_wait_readable(fd, deadline);
    if (rc == 0)
        rc = shm_ctl_recv(fd, out, fds, &nfds);
    if (rc == 0) {
        shm_close_fds(fds, nfds);
        if (out->op == SHM_OP_REFUSE)
            rc = out->err;
    }
    if (rc == 0) {
        struct shm_ctl req;
        shm_ctl_init(&req, SHM_OP_STAT_REQ, NULL);
        rc = shm_ctl_send(fd, &req, NULL, 0);
    }
    if (rc == 0)
        rc = shm_wait_readable(fd, deadline);
    if (rc == 0)
        rc = shm_ctl_recv(fd, out, fds, &nfds);
    if (rc == 0) {
        shm_close_fds(fds, nfds);
        if (out->op != SHM_OP_STAT_REP || out->npeers > SHM_STAT_PEERS)
            rc = FERRY_EPROTO;
    }
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0)
        rc = -errno;
    if (rc == 0) {
        out->pid = (int32_t)cr.pid;
        out->uid = (uint32_t)cr.uid;
    }
    close(fd);
    return rc;
}
