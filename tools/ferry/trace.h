/*
 * trace.h - what `ferry trace` records: events on one clock (CLOCK_REALTIME,
 * nanoseconds, the clock libpcap stamps packets with), and the two sources
 * that are not the traced program's own calls: the packet capture
 * (trace_capture.c, libpcap) and the kernel's view of TCP sockets
 * (trace_capture.c: TCP_INFO and sock_diag netlink, as `ss` does).
 */
#ifndef FERRY_TRACE_H
#define FERRY_TRACE_H

#include <stdint.h>
#include <stdio.h>

enum { LANE_CLIENT, LANE_SERVER, LANE_WIRE };
enum { TEV_ENTER, TEV_RETURN, TEV_SEGMENT, TEV_STATE, TEV_NOTE };

struct tev {
    int64_t t_ns; /* CLOCK_REALTIME */
    int type, lane;
    int step; /* the seed's step this row explains, 0: none */
    /* calls */
    char call[16];
    long ret;
    int err;
    int fd;
    /* segments */
    int dir; /* 0: client to server, 1: server to client */
    char flags[24];
    uint32_t seq, ack, len, win; /* absolute; made relative for output */
    uint16_t sport, dport;
    /* states */
    char state[16];
    char source[12];       /* "tcp_info", "sock_diag", "segments" */
    uint16_t lport, rport; /* the socket the state belongs to */
    char note[96];
    uint64_t seq_no; /* order of arrival: breaks ties in t_ns */
};

/* --- capture (libpcap) ---------------------------------------------------------- */

struct capture;

/* Opens a live capture on iface for TCP segments to or from port (0: every
 * TCP segment), nanosecond timestamps, immediate delivery. pcap_file: also
 * write the packets there (NULL: no). NULL with *why set when capturing is
 * not possible (no privilege, no such interface). */
struct capture *cap_open(const char *iface, int port, const char *pcap_file, char *why,
                         size_t whylen);

/* Delivers the packets captured so far (at most max_ms of waiting for the
 * first): fn gets each segment as a TEV_SEGMENT event (dir set from
 * port_server: a segment from that port is server to client). */
void cap_poll(struct capture *c, int max_ms, int port_server,
              void (*fn)(const struct tev *, void *), void *arg);

void cap_close(struct capture *c);

/* --- the kernel's view of a socket ---------------------------------------------------- */

/* The TCP state of a socket we hold (getsockopt TCP_INFO), as the kernel
 * names it ("ESTABLISHED", "FIN_WAIT1", ...); NULL if fd is not TCP. */
const char *tcp_state_of_fd(int fd);

/* The kernel's name for state number st (include/net/tcp_states.h). */
const char *tcp_state_name(int st);

/* The state of the IPv4 loopback TCP socket lport -> rport (rport 0: any),
 * found with a sock_diag dump; NULL when there is none. Finds sockets no
 * process holds any more (TIME_WAIT, orphaned FIN_WAIT2) or not yet
 * (SYN_RECV, not yet accepted). */
const char *tcp_state_diag(uint16_t lport, uint16_t rport);

/* All TCP sockets with local or remote port `port`: calls fn for each. */
int tcp_diag_each(uint16_t port, void (*fn)(uint16_t lport, uint16_t rport, int state, void *arg),
                  void *arg);

#endif /* FERRY_TRACE_H */
