/*
 * raw_zmtp.h - test helpers that play a ZMTP peer by hand over a raw TCP
 * socket (so a test can send what no well-behaved peer would), and small
 * measurements (RSS). Shared by the stream tests.
 */
#ifndef FERRY_TEST_RAW_ZMTP_H
#define FERRY_TEST_RAW_ZMTP_H

#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static const unsigned char greeting[64]
    __attribute__((unused)) = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1, 'N', 'U', 'L', 'L'};

/* A READY command frame for socket type `type` (e.g. "PUSH"). */
static inline size_t ready_frame(unsigned char *out, const char *type)
{
    size_t tl = strlen(type);
    size_t body = 6 + 1 + 11 + 4 + tl;
    out[0] = 0x04;
    out[1] = (unsigned char)body;
    memcpy(out + 2, "\x05READY\x0bSocket-Type", 18);
    out[20] = out[21] = out[22] = 0;
    out[23] = (unsigned char)tl;
    memcpy(out + 24, type, tl);
    return 2 + body;
}

static inline int port_of(ferry_socket *s)
{
    char ep[128];
    assert_int_equal(ferry_socket_addr(s, ep, sizeof ep), 0);
    const char *c = strrchr(ep, ':');
    assert_non_null(c);
    return atoi(c + 1);
}

static inline int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static inline void raw_send(int fd, const void *b, size_t n)
{
    assert_int_equal(send(fd, b, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads exactly n bytes (within ms), or fails. */
static inline void raw_read(int fd, void *buf, size_t n, int ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, ms), 1);
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* 1 if the peer closed fd within ms (EOF or reset), after discarding any
 * data it sent first. */
static inline int raw_closed(int fd, int ms)
{
    char junk[4096];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) != 1)
            return 0;
        ssize_t r = recv(fd, junk, sizeof junk, 0);
        if (r <= 0)
            return 1;
    }
}

/* A raw peer that completes the handshake as `type`; the greeting and
 * READY of ferry are read and checked. */
static inline int raw_peer(int port, const char *type, const char *expect_type)
{
    int fd = raw_connect(port);
    unsigned char b[64];
    raw_send(fd, greeting, sizeof greeting);
    unsigned char g[64];
    raw_read(fd, g, 64, 5000);
    assert_int_equal(g[0], 0xff);
    assert_int_equal(g[10], 3);
    assert_memory_equal(g + 12, "NULL", 4);
    size_t n = ready_frame(b, type);
    raw_send(fd, b, n);
    unsigned char hdr[2];
    raw_read(fd, hdr, 2, 5000);
    assert_int_equal(hdr[0], 0x04);
    unsigned char body[256];
    raw_read(fd, body, hdr[1], 5000);
    assert_memory_equal(body, "\x05READY", 6);
    assert_non_null(memmem(body, hdr[1], expect_type, strlen(expect_type)));
    return fd;
}

static inline ferry_socket *open_sock(int type)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    return s;
}

static inline long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

#endif /* FERRY_TEST_RAW_ZMTP_H */
