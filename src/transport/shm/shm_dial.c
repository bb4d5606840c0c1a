/*
 * shm_dial.c - the dialer's side of the shm:// handshake (shm_int.h draws
 * it), in steps: ferry_dial runs them in a row and may wait (bounded by
 * the handshake timeout); the I/O thread's redials run each step when the
 * control socket is readable, so a listener that is slow to answer (or
 * stopped) holds no thread.
 *
 * The listener is untrusted like any peer: who it is comes from the kernel
 * (SO_PEERCRED, checked against FERRY_OPT_PEER_UID, since anyone can bind
 * an abstract name first), what it sends is checked (shm_ctl_recv, the
 * descriptors' kinds and seals in shm_fd.c), and the connection memory is
 * ours: made, formatted and sealed here before the listener sees it.
 */
#include "shm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

int shm_dial_start(ferry_socket *s, const char *name, struct shm_pipe **out)
{
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    struct shm_pipe *sp = shm_pipe_new();
    if (sp == NULL)
        return FERRY_ENOMEM;
    fy_pipe_set_url(&sp->base, "shm://%s", name);
    int rc;
    /* non-blocking: a listener with a full backlog must not stall us */
    sp->ctl_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sp->ctl_fd < 0) {
        rc = fy_syserr("shm://%s: socket", name);
        goto fail;
    }
    if (connect(sp->ctl_fd, (struct sockaddr *)&sa, sl) != 0) {
        rc = -errno;
        if (rc == -ENOENT || rc == -ECONNREFUSED || rc == -EAGAIN)
            rc = FERRY_ECONNREFUSED;
        fy_err(rc, "shm://%s: connect", name);
        goto fail;
    }
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(sp->ctl_fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
        !fy_uid_allowed(s, cr.uid)) {
        rc = fy_err(FERRY_EACCES, "shm://%s: the listener runs as uid %u (see FERRY_OPT_PEER_UID)",
                    name, (unsigned)cr.uid);
        goto fail;
    }
    /* who the listener is, from the kernel: its messages' pid is a claim */
    sp->base.peer_pid = (int)cr.pid;
    sp->base.peer_uid = (unsigned)cr.uid;
    fy_ev_report(s, FERRY_EVENT_CONNECTED, 0, 0, NULL, &sp->base, NULL, NULL);
    *out = sp;
    return 0;
fail:
    sp->base.ops->destroy(&sp->base);
    return rc;
}

static int refused(const char *name, const struct shm_pipe *sp, const struct shm_ctl *c)
{
    int rc = c->err < 0 && c->err > -5000 ? c->err : FERRY_ECONNREFUSED;
    return fy_err(rc, "shm://%s: refused by the listener (pid %d): %s", name, sp->base.peer_pid,
                  c->text);
}

/* The connection memory: two rings of cap bytes behind a header, made,
 * formatted and sealed by us. The memfd, or < 0. */
static int conn_memory(const char *name, struct shm_pipe *sp, uint64_t cap, int prefault)
{
    sp->map_len = SHM_CONN_HDR + 2 * fy_ring_bytes(cap);
    int memfd = memfd_create("ferry-conn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0 || ftruncate(memfd, (off_t)sp->map_len) != 0 ||
        fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int rc = fy_syserr("shm://%s: connection memory (%zu bytes)", name, sp->map_len);
        if (memfd >= 0)
            close(memfd);
        return rc;
    }
    sp->map = mmap(NULL, sp->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (sp->map == MAP_FAILED) {
        sp->map = NULL;
        int rc = fy_syserr("shm://%s: mmap %zu bytes", name, sp->map_len);
        close(memfd);
        return rc;
    }
    struct shm_conn_hdr *h = sp->map;
    memcpy(h->magic, "FERRYCON", 8);
    h->version = 1;
    h->ring_cap = cap;
    fy_ring_format((char *)sp->map + SHM_CONN_HDR, cap);
    fy_ring_format((char *)sp->map + SHM_CONN_HDR + fy_ring_bytes(cap), cap);
    /* both rings are ours to make: in place before the first message */
    if (prefault) {
        shm_populate((char *)sp->map + SHM_CONN_HDR, fy_ring_bytes(cap), 0);
        shm_populate((char *)sp->map + SHM_CONN_HDR + fy_ring_bytes(cap), fy_ring_bytes(cap), 0);
    }
    return memfd;
}

/* The WELCOME's checks: its kind, the listener's socket type and routing
 * id, and the descriptors it came with (taken into sp). */
static int check_welcome(ferry_socket *s, const char *name, struct shm_pipe *sp,
                         const struct shm_ctl *c, int *fds, int nfds)
{
    if (c->op == SHM_OP_REFUSE)
        return refused(name, sp, c);
    if (c->op != SHM_OP_WELCOME || nfds != 2 + (c->pool_size != 0))
        return fy_err(FERRY_EPROTO, "shm://%s: unexpected handshake message %u", name, c->op);
    if (shm_ctl_peer_rid(c, &sp->base) != 0)
        return fy_err(FERRY_EPROTO, "shm://%s: the listener announced a routing id of %u bytes",
                      name, (unsigned)c->rid_len);
    if (!fy_types_compatible(s->proto->type, c->type))
        return fy_err(FERRY_EPEERTYPE, "shm://%s: a %s socket cannot talk to a %s socket", name,
                      s->proto->name, fy_type_name(c->type));
    sp->peer_wake = shm_map_wake(fds[0]);
    if (sp->peer_wake == NULL || fy_shm_check_event_sock(fds[1]) != 0)
        return fy_err(FERRY_EPROTO, "shm://%s: listener sent bad descriptors", name);
    if (nfds == 3 && shm_pool_accept(sp, c, fds[2]) != 0)
        return fy_err(FERRY_EPROTO, "shm://%s: listener sent a bad pool (%llu bytes)", name,
                      (unsigned long long)c->pool_size);
    sp->peer_efd = fds[1];
    fds[1] = -1;
    return 0;
}

int shm_dial_welcome(ferry_socket *s, const char *name, struct shm_pipe *sp)
{
    struct shm_ctl c;
    int fds[4], nfds = 0;
    int rc = shm_ctl_recv(sp->ctl_fd, &c, fds, &nfds);
    if (rc == -EAGAIN)
        return rc;
    if (rc != 0) {
        if (rc == FERRY_EVERSION)
            return fy_err(rc,
                          "shm://%s: the listener (pid %d) speaks shm handshake version %u, this "
                          "ferry version %d: both ends need the same ferry release",
                          name, sp->base.peer_pid, (unsigned)c.version, SHM_CTL_VERSION);
        return fy_err(rc, "shm://%s: handshake", name);
    }
    rc = check_welcome(s, name, sp, &c, fds, nfds);
    shm_close_fds(fds, nfds);
    if (rc != 0 && c.op != SHM_OP_REFUSE) { /* tell the listener why, keeping our detail */
        char why[sizeof c.text];
        snprintf(why, sizeof why, "%s", ferry_errdetail());
        size_t wl = strlen(why), el = strlen(ferry_strerror(rc)) + 2;
        if (wl >= el && strcmp(why + wl - el + 2, ferry_strerror(rc)) == 0)
            why[wl - el] = '\0'; /* fy_err adds it again */
        shm_refuse(sp->ctl_fd, s, rc, "%s", why);
        fy_err(rc, "%s", why);
    }
    if (rc != 0)
        return rc;
    uint64_t cap = s->opt.ring_size;
    if (c.ring_size > cap && c.ring_size <= FY_RING_MAX)
        cap = c.ring_size;
    cap = (cap + 63u) & ~(uint64_t)63u;
    int memfd = conn_memory(name, sp, cap, s->opt.ring_prefault);
    if (memfd < 0)
        return memfd;
    shm_pipe_rings(sp, s, cap, 1, c.maxmsgsize, c.rcvhwm, c.sndhwm);
    shm_ctl_init(&c, SHM_OP_HELLO, s);
    c.ring_size = cap;
    int efd = fy_sock_event_sender(s);
    int out_fds[4] = {memfd, s->wake_fd, efd}, nout = 3;
    struct shm_pool *offered = NULL;
    rc = efd < 0 ? efd : shm_pool_offer(s, sp, &c, out_fds, &nout, &offered);
    if (rc == 0)
        rc = shm_ctl_send(sp->ctl_fd, &c, out_fds, nout);
    if (efd >= 0)
        close(efd); /* the peer's now */
    close(memfd);
    if (rc != 0)
        return fy_err(rc, "shm://%s: send hello", name);
    return 0;
}

int shm_dial_ack(ferry_socket *s, const char *name, struct shm_pipe *sp)
{
    FY_UNUSED(s);
    struct shm_ctl c;
    int fds[4], nfds = 0;
    int rc = shm_ctl_recv(sp->ctl_fd, &c, fds, &nfds);
    if (rc == -EAGAIN)
        return rc;
    if (rc != 0)
        return fy_err(rc, "shm://%s: handshake", name);
    shm_close_fds(fds, nfds);
    if (c.op == SHM_OP_REFUSE)
        return refused(name, sp, &c);
    if (c.op != SHM_OP_ACK)
        return fy_err(FERRY_EPROTO, "shm://%s: unexpected handshake message %u", name, c.op);
    return 0;
}

int shm_dial_connect(ferry_socket *s, const char *name, struct shm_pipe **out)
{
    uint64_t deadline = fy_deadline_ns(s->opt.handshake_ms);
    struct shm_pipe *sp = NULL;
    int rc = shm_dial_start(s, name, &sp);
    if (rc != 0)
        return rc;
    do
        rc = shm_wait_readable(sp->ctl_fd, deadline);
    while (rc == 0 && (rc = shm_dial_welcome(s, name, sp)) == -EAGAIN);
    if (rc == 0)
        do
            rc = shm_wait_readable(sp->ctl_fd, deadline);
        while (rc == 0 && (rc = shm_dial_ack(s, name, sp)) == -EAGAIN);
    if (rc != 0) {
        if (rc == FERRY_ETIMEDOUT)
            fy_err(rc, "shm://%s: handshake", name);
        shm_dial_failed(s, sp, rc);
        sp->base.ops->destroy(&sp->base);
        return rc;
    }
    *out = sp;
    return 0;
}

void shm_dial_failed(ferry_socket *s, struct shm_pipe *sp, int rc)
{
    const char *why = ferry_errdetail();
    fy_ev_report(s, FERRY_EVENT_HANDSHAKE_FAILED, rc, 0, NULL, &sp->base, NULL, "%s",
                 why[0] ? why : ferry_strerror(rc));
}
