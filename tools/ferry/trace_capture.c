/*
 * trace_capture.c - the two outside views `ferry trace` needs: the TCP
 * segments on the wire (libpcap) and the kernel's state of each socket
 * (TCP_INFO for a socket we hold, sock_diag netlink for the others, as
 * `ss` does). Everything read from a packet is bounds-checked: a capture
 * may hold truncated or foreign frames.
 */
#include "trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct capture {
    pcap_t *p;
    pcap_dumper_t *dump;
    int linktype;
    int nano; /* timestamps in nanoseconds (else microseconds) */
    int port_server;
    void (*fn)(const struct tev *, void *);
    void *arg;
};

struct capture *cap_open(const char *iface, int port, const char *pcap_file, char *why,
                         size_t whylen)
{
    char err[PCAP_ERRBUF_SIZE] = "";
    pcap_t *p = pcap_create(iface, err);
    if (p == NULL) {
        snprintf(why, whylen, "%s", err);
        return NULL;
    }
    pcap_set_snaplen(p, 256); /* headers are enough */
    pcap_set_immediate_mode(p, 1);
    pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
    pcap_set_timeout(p, 10);
    int rc = pcap_activate(p);
    if (rc < 0) {
        if (rc == PCAP_ERROR_PERM_DENIED)
            snprintf(why, whylen,
                     "no permission to capture packets on %s (needs CAP_NET_RAW: "
                     "run as root, or setcap cap_net_raw+ep on ferry)",
                     iface);
        else
            snprintf(why, whylen, "cannot capture on %s: %s", iface, pcap_geterr(p));
        pcap_close(p);
        return NULL;
    }
    struct bpf_program prog;
    char filter[64];
    if (port > 0)
        snprintf(filter, sizeof filter, "tcp port %d", port);
    else
        snprintf(filter, sizeof filter, "tcp");
    if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 ||
        pcap_setfilter(p, &prog) != 0) {
        snprintf(why, whylen, "capture filter '%s': %s", filter, pcap_geterr(p));
        pcap_close(p);
        return NULL;
    }
    pcap_freecode(&prog);
    if (pcap_setnonblock(p, 1, err) != 0) {
        snprintf(why, whylen, "capture: %s", err);
        pcap_close(p);
        return NULL;
    }
    struct capture *c = calloc(1, sizeof *c);
    c->p = p;
    c->linktype = pcap_datalink(p);
    c->nano = pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
    if (pcap_file) {
        c->dump = pcap_dump_open(p, pcap_file);
        if (c->dump == NULL) {
            snprintf(why, whylen, "cannot write %s: %s", pcap_file, pcap_geterr(p));
            pcap_close(p);
            free(c);
            return NULL;
        }
    }
    return c;
}

static uint16_t be16(const unsigned char *b) { return (uint16_t)(b[0] << 8 | b[1]); }
static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void on_packet(unsigned char *user, const struct pcap_pkthdr *h, const unsigned char *b)
{
    struct capture *c = (struct capture *)user;
    if (c->dump)
        pcap_dump((unsigned char *)c->dump, h, b);
    size_t n = h->caplen, off;
    int ethertype;
    switch (c->linktype) {
    case DLT_EN10MB:
        if (n < 14)
            return;
        ethertype = be16(b + 12);
        off = 14;
        break;
    case DLT_LINUX_SLL:
        if (n < 16)
            return;
        ethertype = be16(b + 14);
        off = 16;
        break;
    case DLT_RAW:
        ethertype = n > 0 && (b[0] >> 4) == 6 ? 0x86dd : 0x0800;
        off = 0;
        break;
    default:
        return;
    }
    size_t tcp;
    uint32_t iplen;
    if (ethertype == 0x0800) {
        if (n < off + 20 || (b[off] >> 4) != 4 || b[off + 9] != IPPROTO_TCP)
            return;
        size_t ihl = (size_t)(b[off] & 15) * 4;
        iplen = be16(b + off + 2);
        if (ihl < 20 || iplen < ihl)
            return;
        tcp = off + ihl;
        iplen -= (uint32_t)ihl;
    } else if (ethertype == 0x86dd) {
        if (n < off + 40 || b[off + 6] != IPPROTO_TCP)
            return;
        iplen = be16(b + off + 4);
        tcp = off + 40;
    } else {
        return;
    }
    if (n < tcp + 20)
        return;
    size_t doff = (size_t)(b[tcp + 12] >> 4) * 4;
    if (doff < 20 || iplen < doff)
        return;
    struct tev e;
    memset(&e, 0, sizeof e);
    e.type = TEV_SEGMENT;
    e.lane = LANE_WIRE;
    /* tv_usec holds nanoseconds when the capture gave nanosecond stamps */
    e.t_ns = (int64_t)h->ts.tv_sec * 1000000000 + (int64_t)h->ts.tv_usec * (c->nano ? 1 : 1000);
    e.sport = be16(b + tcp);
    e.dport = be16(b + tcp + 2);
    e.seq = be32(b + tcp + 4);
    e.ack = be32(b + tcp + 8);
    e.win = be16(b + tcp + 14);
    e.len = iplen - (uint32_t)doff;
    e.dir = e.sport == c->port_server ? 1 : 0;
    unsigned fl = b[tcp + 13];
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{0x02, "SYN"}, {0x01, "FIN"}, {0x04, "RST"}, {0x08, "PSH"}, {0x10, "ACK"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(fl & names[i].bit))
            continue;
        if (e.flags[0])
            strcat(e.flags, "|");
        strcat(e.flags, names[i].name);
    }
    if ((fl & 0x10) == 0)
        e.ack = 0;
    c->fn(&e, c->arg);
}

void cap_poll(struct capture *c, int max_ms, int port_server,
              void (*fn)(const struct tev *, void *), void *arg)
{
    c->fn = fn;
    c->arg = arg;
    c->port_server = port_server;
    if (max_ms > 0) {
        int fd = pcap_get_selectable_fd(c->p);
        if (fd >= 0) {
            fd_set rf;
            FD_ZERO(&rf);
            FD_SET(fd, &rf);
            struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
            select(fd + 1, &rf, NULL, NULL, &tv);
        }
    }
    /* bounded: on a busy port the caller must still get to check for a
     * signal or a count now and then */
    for (int i = 0; i < 64 && pcap_dispatch(c->p, 256, on_packet, (unsigned char *)c) > 0; i++) {
    }
    if (c->dump)
        pcap_dump_flush(c->dump);
}

void cap_close(struct capture *c)
{
    if (c == NULL)
        return;
    if (c->dump)
        pcap_dump_close(c->dump);
    pcap_close(c->p);
    free(c);
}

/* --- socket states ------------------------------------------------------------ */

const char *tcp_state_name(int st)
{
    static const char *const names[] = {
        "?",     "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
        "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
    if (st < 0 || st >= (int)(sizeof names / sizeof names[0]))
        return "?";
    return names[st];
}

const char *tcp_state_of_fd(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return NULL;
    return tcp_state_name(ti.tcpi_state);
}

static int diag_dump(int family, uint16_t port,
                     void (*fn)(uint16_t lport, uint16_t rport, int state, void *arg), void *arg)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = (uint8_t)family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    static char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                goto out;
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                    rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
                goto out;
            }
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                continue;
            struct inet_diag_msg *m = NLMSG_DATA(h);
            uint16_t lp = ntohs(m->id.idiag_sport), rp = ntohs(m->id.idiag_dport);
            if (port == 0 || lp == port || rp == port)
                fn(lp, rp, m->idiag_state, arg);
        }
    }
out:
    close(fd);
    return rc;
}

int tcp_diag_each(uint16_t port, void (*fn)(uint16_t lport, uint16_t rport, int state, void *arg),
                  void *arg)
{
    /* IPv6 too: a dual-stack listener holds its IPv4 connections in IPv6
     * sockets */
    int rc = diag_dump(AF_INET, port, fn, arg);
    int rc6 = diag_dump(AF_INET6, port, fn, arg);
    return rc ? rc : rc6;
}

struct diag_find {
    uint16_t lport, rport;
    int state;
};

static void diag_find_one(uint16_t lp, uint16_t rp, int st, void *arg)
{
    struct diag_find *f = arg;
    if (lp == f->lport && (f->rport == 0 || rp == f->rport))
        f->state = st;
}

const char *tcp_state_diag(uint16_t lport, uint16_t rport)
{
    struct diag_find f = {lport, rport, -1};
    tcp_diag_each(lport, diag_find_one, &f);
    return f.state < 0 ? NULL : tcp_state_name(f.state);
}
