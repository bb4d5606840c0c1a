/*
 * shm_int.h - what the parts of the shm:// transport share.
 *
 * Connection set-up (shm.c). A listener is a SOCK_SEQPACKET Unix socket in
 * the abstract namespace, "@ferry/shm/NAME": it has no file, so nothing is
 * left behind when its process dies, and it vanishes with its last fd, so a
 * dead owner's endpoint cannot go stale. The handshake, all messages
 * struct shm_ctl:
 *
 *   dialer                               listener
 *   connect()  ------------------------>  accept4(); SO_PEERCRED: uid ok?
 *              <-- WELCOME (type, ring size wish) + [wake memfd, eventfd]
 *                  or REFUSE (reason), close
 *   check type; create the connection memfd (two rings), seal it
 *   HELLO (type, ring size, limits) + [conn memfd, wake memfd, eventfd] -->
 *                                         validate everything; map
 *              <-- ACK, or REFUSE (reason)
 *
 * After that the control socket carries nothing; it stays open so that
 * each side sees the other's death at once (EOF/HUP in the I/O thread).
 *
 * Connection memfd: a 256-byte header (struct shm_conn_hdr), then the
 * dialer-to-listener ring, then the listener-to-dialer ring, each
 * fy_ring_bytes(cap). Both sides compute the offsets from the agreed
 * capacity and never read them from shared memory.
 */
#ifndef FY_SHM_INT_H
#define FY_SHM_INT_H

#include "../../core/sock.h"
#include "ring.h"

#define SHM_CMD_SUB 1
#define SHM_CMD_UNSUB 2
#define SHM_CMD_ABORT 3

#define SHM_CONN_HDR 256u

/* The handshake's version. 2: the wake block's `woken` word (fy_wake) is
 * honoured by both sides; a version-1 peer would never re-arm it, so the
 * versions do not mix. 3: REQ and REP frame their messages as ZeroMQ does
 * (REQ's empty delimiter, a REP's envelope travel as parts), and the
 * handshake carries the socket's routing id (for a ROUTER peer); a
 * version-2 REP would hand the delimiter to its user as the request. A
 * peer of another version is told so (FERRY_EVERSION, with both
 * versions), whichever side it is. */
#define SHM_CTL_VERSION 3

struct shm_conn_hdr {
    char magic[8]; /* "FERRYCON" */
    uint32_t version;
    uint32_t reserved;
    uint64_t ring_cap;
    /* Set by a side that closes its socket, before it hangs up, so the
     * other side's next send fails at once instead of writing into a ring
     * nobody will read. [0]: the dialer closed, [1]: the listener. */
    _Alignas(64) _Atomic uint32_t closed[2];
};

enum shm_op {
    SHM_OP_WELCOME = 1,
    SHM_OP_HELLO = 2,
    SHM_OP_ACK = 3,
    SHM_OP_REFUSE = 4,
    SHM_OP_STAT_REQ = 5,
    SHM_OP_STAT_REP = 6
};

#define SHM_STAT_PEERS 32

struct shm_ctl {
    char magic[8]; /* "FERRYCTL" */
    uint32_t version;
    uint32_t op;
    int32_t type;
    int32_t pid;
    uint64_t ring_size;
    uint64_t maxmsgsize;
    uint32_t rcvhwm;
    uint32_t sndhwm;
    int32_t err;
    char text[160];
    /* STAT_REP */
    uint32_t npeers;
    uint32_t uid;
    struct {
        int32_t pid;
        uint32_t reserved;
        uint64_t rx_fill; /* bytes waiting for the listener */
        uint64_t tx_fill; /* bytes waiting for the peer     */
        uint64_t ring_cap;
    } peers[SHM_STAT_PEERS];
    /* WELCOME, HELLO: the sender's routing id (FERRY_OPT_ROUTING_ID, for a
     * pattern whose wire carries one), rid_len 0 if none; at most
     * FY_RID_MAX (a longer claim is refused) */
    uint32_t rid_len;
    unsigned char rid[FY_RID_MAX + 1];
};

/* What an epoll event points at. */
enum { SHM_EV_CMD, SHM_EV_LISTENER, SHM_EV_PENDING, SHM_EV_PIPE };
struct shm_ev {
    int kind;
    int fd;
};

struct shm_dialer;

struct shm_pipe {
    struct fy_pipe base; /* first: a struct fy_pipe * is a struct shm_pipe * */
    int ctl_fd;
    void *map;
    size_t map_len;
    struct fy_ring_writer w;
    struct fy_ring_reader r;
    uint64_t max_rec;
    struct fy_wake *peer_wake;
    int peer_efd;
    uint64_t peer_maxmsg, own_maxmsg;
    uint64_t hwm;
    uint64_t consumed_cache; /* the reader's message count, last seen */
    /* sending: progress through a streamed message */
    size_t tx_part;
    uint64_t tx_off;
    int abort_pending;
    int no_room; /* the last send attempt found no room            */
    int asked;   /* we set want_room in the ring and wait for room */
    /* receiving: the message being assembled */
    struct fy_rxmsg partial;
    size_t partial_cap; /* room in partial.parts */
    unsigned char *cur;
    size_t cur_len, cur_cap;
    uint64_t partial_total;
    uint64_t errors;
    unsigned empty_polls;
    int side;                  /* 0: dialer, 1: listener */
    struct shm_ev ev;          /* liveness watch in the I/O thread */
    struct shm_dialer *dialer; /* reconnects when this pipe dies  */
};

extern const struct fy_pipe_ops fy_shm_pipe_ops;

/* Descriptor checks (shm_fd.c). A memfd of exactly size bytes on tmpfs,
 * sealed against shrinking (seals read before the size); a datagram
 * socket. 0 or FERRY_EPROTO. */
int fy_shm_check_memfd(int fd, size_t size);
int fy_shm_check_event_sock(int fd);

/* `ferry ls` (shm.c): asks the listener of NAME for its peers;
 * out->pid and out->uid are the kernel's (SO_PEERCRED), not its word. */
int fy_shm_stat(const char *name, struct shm_ctl *out);

/* The live shm:// endpoints of the machine, for ferry_objects_list
 * (shm_list.c). */
int fy_shm_list(int (*fn)(const ferry_objinfo *, void *), void *arg);

#endif
