/*
 * stream_int.h - the tcp:// and ipc:// transports (ZMTP 3.1 over a byte
 * stream): addresses, and what the transport shares between its files.
 */
#ifndef FY_STREAM_INT_H
#define FY_STREAM_INT_H

#include "../../core/sock.h"

#include <sys/socket.h>

/* A resolved address to bind or connect to. */
struct st_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int family; /* AF_INET, AF_INET6, AF_UNIX */
};

/* Parses the part of a tcp:// URL after the scheme: "HOST:PORT",
 * "[V6]:PORT", and for binding "*:PORT" (every IPv4 interface) and port
 * "*" or 0 (a free port). Host names go through getaddrinfo (the first
 * usable result). Returns 0 or FERRY_EBADURL / a resolver failure. */
int st_tcp_addr(const char *rest, int bind, struct st_addr *out);

/* ipc:// paths: "/abs/path", "rel/path", or "@name" for a Linux abstract
 * socket (as libzmq spells it: no trailing NUL in the address). */
int st_ipc_addr(const char *rest, struct st_addr *out);

/* 1 if the host in a tcp:// address is a literal IPv4 or IPv6 address
 * (nothing to resolve again on reconnect). */
int st_is_numeric(const char *rest);

/* Formats an address back as a URL ("tcp://127.0.0.1:40123"). */
void st_addr_url(const struct st_addr *a, char *buf, size_t len);

#endif /* FY_STREAM_INT_H */
