/*
 * stream_addr.c - tcp:// and ipc:// address parsing and formatting.
 *
 * Every byte of a URL is the user's (or a config file's): lengths are
 * checked before copying, ports are parsed strictly, and nothing is
 * resolved that does not look like a host.
 */
#include "stream_int.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int parse_port(const char *p, int bind, unsigned *port)
{
    if (bind && (strcmp(p, "*") == 0 || strcmp(p, "0") == 0)) {
        *port = 0;
        return 0;
    }
    if (*p == '\0' || strlen(p) > 5)
        return -1;
    unsigned v = 0;
    for (const char *c = p; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (unsigned)(*c - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

int st_tcp_addr(const char *rest, int bind, struct st_addr *out)
{
    memset(out, 0, sizeof *out);
    char host[256];
    const char *colon, *hs = rest;
    size_t hlen;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (close == NULL || close[1] != ':')
            return fy_err(FERRY_EBADURL, "tcp://%.200s: expected [IPV6]:PORT", rest);
        hs = rest + 1;
        hlen = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (colon == NULL)
            return fy_err(FERRY_EBADURL, "tcp://%.200s: expected HOST:PORT", rest);
        hlen = (size_t)(colon - rest);
    }
    if (hlen == 0 || hlen >= sizeof host)
        return fy_err(FERRY_EBADURL, "tcp://%.200s: bad host", rest);
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    unsigned port;
    if (parse_port(colon + 1, bind, &port) != 0)
        return fy_err(FERRY_EBADURL, "tcp://%.200s: bad port '%.20s'%s", rest, colon + 1,
                      bind ? " (1-65535, or * for any)" : " (1-65535)");
    if (bind && strcmp(host, "*") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof *sin;
        out->family = AF_INET;
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    hints.ai_family = rest[0] == '[' ? AF_INET6 : AF_UNSPEC;
    if (bind)
        hints.ai_flags |= AI_PASSIVE;
    char pstr[8];
    snprintf(pstr, sizeof pstr, "%u", port);
    int rc = getaddrinfo(host, pstr, &hints, &res);
    if (rc != 0)
        return fy_err(FERRY_EBADURL, "tcp://%.200s: cannot resolve '%s': %s", rest, host,
                      gai_strerror(rc));
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
            a->ai_addrlen <= sizeof out->ss) {
            memcpy(&out->ss, a->ai_addr, a->ai_addrlen);
            out->len = a->ai_addrlen;
            out->family = a->ai_family;
            break;
        }
    }
    freeaddrinfo(res);
    if (out->len == 0)
        return fy_err(FERRY_EBADURL, "tcp://%.200s: no IPv4 or IPv6 address", rest);
    return 0;
}

int st_ipc_addr(const char *rest, struct st_addr *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(rest);
    if (n == 0 || n >= sizeof sun->sun_path || (rest[0] == '@' && n < 2))
        return fy_err(FERRY_EBADURL, "ipc://%.200s: path empty or longer than %zu bytes", rest,
                      sizeof sun->sun_path - 1);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, rest, n);
    if (rest[0] == '@')
        sun->sun_path[0] = '\0'; /* abstract: no NUL after the name */
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (rest[0] == '@' ? 0 : 1));
    out->family = AF_UNIX;
    return 0;
}

void st_addr_url(const struct st_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        snprintf(buf, len, "tcp://%s:%u", host, ntohs(sin->sin_port));
    } else if (a->family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "tcp://[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
        size_t n = a->len - offsetof(struct sockaddr_un, sun_path);
        if (n > 0 && sun->sun_path[0] == '\0')
            snprintf(buf, len, "ipc://@%.*s", (int)(n - 1), sun->sun_path + 1);
        else
            snprintf(buf, len, "ipc://%s", sun->sun_path);
    }
}

int st_is_numeric(const char *rest)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *end = rest[0] == '[' ? strchr(rest, ']') : strrchr(rest, ':');
    const char *start = rest[0] == '[' ? rest + 1 : rest;
    if (end == NULL || (size_t)(end - start) >= sizeof host)
        return 0;
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}
