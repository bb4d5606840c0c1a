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

#include "../../core/loop.h"
#include "../../core/monitor.h"
#include "../../core/sock.h"
#include "pool.h"
#include "ring.h"

#include <sys/socket.h>

#define SHM_CMD_SUB 1
#define SHM_CMD_UNSUB 2
#define SHM_CMD_ABORT 3

#define SHM_CONN_HDR 256u

/* The handshake's version. 2: the wake block's `woken` word (fy_wake) is
 * honoured by both sides; a version-1 peer would never re-arm it, so the
 * versions do not mix. 3: REQ and REP frame their messages as ZeroMQ does
 * (REQ's empty delimiter, a REP's envelope travel as parts), and the
 * handshake carries the socket's routing id (for a ROUTER peer); a
 * version-2 REP would hand the delimiter to its user as the request. 4:
 * a small multipart message may travel as one packed record
 * (FY_RING_F_PACK), which a version-3 reader would take for garbage. A
 * peer of another version is told so (FERRY_EVERSION, with both
 * versions), whichever side it is. 5: the broadcast pool (pool.h): a
 * WELCOME or HELLO may carry the sender's pool, and a ring may carry REF
 * records into it. 6: the pool's first line is the publisher's bell
 * (a version-5 publisher places messages there, which a version-6 reader
 * refuses), and a reader that sleeps on it says so in the connection
 * header (bell_wait). */
#define SHM_CTL_VERSION 6

struct shm_conn_hdr {
    char magic[8]; /* "FERRYCON" */
    uint32_t version;
    uint32_t reserved;
    uint64_t ring_cap;
    /* Set by a side that closes its socket, before it hangs up, so the
     * other side's next send fails at once instead of writing into a ring
     * nobody will read. [0]: the dialer closed, [1]: the listener. */
    _Alignas(64) _Atomic uint32_t closed[2];
    /* Set by a side whose sleeps include the other side's bell (sock.h,
     * bells) while the pipe is in its socket (set as it joins, cleared as
     * it leaves): [0] the dialer, [1] the listener. The other side may then
     * wake it by ringing the bell. A side that sets it and does not listen
     * only sleeps through its own messages. */
    _Atomic uint32_t bell_wait[2];
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
    /* WELCOME, HELLO: the size of the sender's broadcast pool, whose memfd
     * then comes last among the descriptors; 0: none */
    uint64_t pool_size;
};

struct shm_dialer;
struct shm_tran;

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
    int no_room;   /* the last send attempt found no room            */
    int asked;     /* we set want_room in the ring and wait for room */
    int wake_owed; /* wrote for a FERRY_BATCH send and did not wake the peer */
    /* receiving: the message being assembled */
    struct fy_rxmsg partial;
    unsigned char *cur;
    size_t cur_len, cur_cap;
    uint64_t partial_total;
    uint64_t errors;
    unsigned empty_polls;
    /* the broadcast pool: ours, when we fan out (REFs we sent into it);
     * the peer's, mapped read-only, when it sent us one */
    struct shm_pool_link pool;
    const unsigned char *rx_pool;
    uint64_t rx_pool_len;
    int side;                  /* 0: dialer, 1: listener */
    struct fy_io io;           /* liveness watch on the I/O thread */
    struct shm_tran *t;        /* the transport watching it       */
    struct shm_dialer *dialer; /* reconnects when this pipe dies  */
};

extern const struct fy_pipe_ops fy_shm_pipe_ops;

/* Tells the peer we are leaving: the `closed` flag and a shut control
 * socket, or, while messages of its broadcast pool may be held here, only
 * the read side (our watch lets go) until the pipe is destroyed. */
void shm_pipe_hangup(struct shm_pipe *sp);

/* Parts packed in one record at most: a writer's choice (the reader
 * takes up to FY_MAX_PARTS), so the table stays small. */
#define SHM_PACK_PARTS 64
/* The packed form of m (at most SHM_PACK_PARTS parts): a u32 count, a u32
 * length per part, then the parts back to back (native byte order: both
 * peers run on this host). Its size, and writing it at dst (shm_pipe.c). */
uint64_t shm_pack_bytes(const struct fy_txmsg *m);
void shm_pack_write(unsigned char *dst, const struct fy_txmsg *m);

/* The socket's broadcast pool (made at its first use) when its pattern
 * fans out and FERRY_OPT_SHM_POOL is not 0; else NULL (shm.c). */
struct shm_pool *shm_tran_pool(ferry_socket *s);
/* The pool's descriptor and size go with a WELCOME or HELLO: fills
 * c->pool_size, appends the fd to fds, links the pipe sp if given (which
 * will send into it); *offered: the pool, or NULL. 0 or FERRY_ENOMEM. */
int shm_pool_offer(ferry_socket *s, struct shm_pipe *sp, struct shm_ctl *c, int *fds, int *nfds,
                   struct shm_pool **offered);
/* Maps the pool a WELCOME or HELLO brought (fd = its last descriptor). 0
 * or FERRY_EPROTO. */
int shm_pool_accept(struct shm_pipe *sp, const struct shm_ctl *c, int fd);

/* Faults in len bytes at addr now, writable (MADV_POPULATE_WRITE), and
 * writes each page once, so the first lap of a ring takes no fault in the
 * middle of traffic: on this VM each first touch of a fresh memfd page
 * cost 20-50 us, the p99 of a busy REQ/REP. Only up to SHM_POPULATE_MAX:
 * a larger ring (a peer's choice, on the listener's side) would stall the
 * I/O thread that many page allocations; it faults in as it is used.
 * present_only: only when every page already exists (the peer's memory:
 * mapping it costs us no allocation). Best effort (shm_fd.c); only with FERRY_OPT_RING_PREFAULT,
 * since on the same VM it makes a connection's set-up cost ~9 ms instead of 0.5. */
#define SHM_POPULATE_MAX (16u << 20)
void shm_populate(void *addr, size_t len, int present_only);

/* Descriptor checks (shm_fd.c). A memfd of exactly size bytes on tmpfs,
 * sealed against shrinking (seals read before the size); a datagram
 * socket. 0 or FERRY_EPROTO. */
int fy_shm_check_memfd(int fd, size_t size);
int fy_shm_check_event_sock(int fd);

/* A new pipe without a connection (the creator holds its reference), and
 * its two ring views once the connection memory is mapped (dialer: writes
 * the first ring, reads the second), under the limits both ends announced
 * (shm_pipe.c). */
struct shm_pipe *shm_pipe_new(void);
void shm_pipe_rings(struct shm_pipe *sp, ferry_socket *s, uint64_t cap, int dialer,
                    uint64_t peer_maxmsg, uint32_t peer_rcvhwm, uint32_t peer_sndhwm);

/* Control messages (shm_ctl.c). */
struct sockaddr_un;
/* The listener's abstract address "@ferry/shm/NAME"; its length. */
socklen_t shm_addr(struct sockaddr_un *sa, const char *name);
/* A message of operation op from s (NULL: no socket's fields). */
void shm_ctl_init(struct shm_ctl *c, int op, ferry_socket *s);
/* The routing id a WELCOME or HELLO announced, onto p. 0, or FERRY_EPROTO
 * when it claims more than FY_RID_MAX bytes. */
int shm_ctl_peer_rid(const struct shm_ctl *c, struct fy_pipe *p);
/* Sends c with nfds (<= 4) descriptors, never waiting. 0 or < 0. */
int shm_ctl_send(int fd, const struct shm_ctl *c, const int *fds, int nfds);
/* Receives one message and up to 4 descriptors (more are closed). 0,
 * -EAGAIN, FERRY_ECONNRESET on EOF, FERRY_EVERSION for another release's
 * handshake, FERRY_EPROTO for anything malformed, or -errno. */
int shm_ctl_recv(int fd, struct shm_ctl *c, int *fds, int *nfds);
/* Sends a REFUSE saying why (printf format), and sets fy_err to it. */
void shm_refuse(int fd, ferry_socket *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Waits until fd is readable or the deadline (monotonic ns) passes. */
int shm_wait_readable(int fd, uint64_t deadline);
/* Closes descriptors a peer sent (fy_close_foreign: never waits on it). */
void shm_close_fds(int *fds, int n);
/* Maps a peer's wake block after checking its memfd; NULL if bad. */
struct fy_wake *shm_map_wake(int fd);

/* The dialer's side of the handshake, in steps so that the I/O thread can
 * run it without waiting (shm_dial.c); ferry_dial runs them in a row.
 *  start    connects to NAME's listener and checks who it is (SO_PEERCRED).
 *           0 and *out, or FERRY_ECONNREFUSED when nobody listens.
 *  welcome  takes the listener's WELCOME and answers HELLO with the
 *           connection memory. 0, -EAGAIN (nothing yet), or < 0.
 *  ack      takes the listener's ACK. 0, -EAGAIN, or < 0.
 * On failure the caller destroys the pipe; the detail is in fy_err. */
int shm_dial_start(ferry_socket *s, const char *name, struct shm_pipe **out);
int shm_dial_welcome(ferry_socket *s, const char *name, struct shm_pipe *sp);
int shm_dial_ack(ferry_socket *s, const char *name, struct shm_pipe *sp);
/* The three in a row, waiting up to the handshake timeout. */
int shm_dial_connect(ferry_socket *s, const char *name, struct shm_pipe **out);
/* A dial's handshake failed with rc after its connection was up: its
 * HANDSHAKE_FAILED event (the detail from fy_err). */
void shm_dial_failed(ferry_socket *s, struct shm_pipe *sp, int rc);

/* `ferry ls` (shm_ctl.c): asks the listener of NAME for its peers;
 * out->pid and out->uid are the kernel's (SO_PEERCRED), not its word. */
int fy_shm_stat(const char *name, struct shm_ctl *out);

/* The live shm:// endpoints of the machine, for ferry_objects_list
 * (shm_list.c). */
int fy_shm_list(int (*fn)(const ferry_objinfo *, void *), void *arg);

#endif
