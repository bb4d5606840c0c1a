/*
 * bench_peers.c - the messaging libraries `ferry bench` compares on ipc://,
 * tcp:// and inproc://, behind one small interface (bench.h): ferry itself,
 * libzmq and nng. The peers are loaded with dlopen() when installed
 * (libzmq5, libnng1): the tool never links them, and without them their
 * rows are simply absent. Only the few calls and constants used are
 * declared here, from their stable ABIs.
 */
#include "bench.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CURVE (bench_curve): one key pair for every listener (a server
 * admitting any client) and one for every dialer, made once. */
int bench_curve;
static char ck_srv_pub[41], ck_srv_sec[41], ck_cli_pub[41], ck_cli_sec[41];
static void curve_keys(void);

void bench_curve_on(int on)
{
    bench_curve = on;
    if (on)
        curve_keys();
}

static void curve_keys(void)
{
    if (ck_srv_pub[0] == '\0' && (ferry_curve_keypair(ck_srv_pub, ck_srv_sec) != 0 ||
                                  ferry_curve_keypair(ck_cli_pub, ck_cli_sec) != 0)) {
        fputs("ferry: bench: no CURVE keys (libsodium)\n", stderr);
        _exit(2);
    }
}

static void *fb_open(int type)
{
    ferry_socket *s = bench_open_ferry(type, 0);
    ferry_setopt_int(s, FERRY_OPT_SNDHWM, 1000); /* libzmq's default, on both */
    ferry_setopt_int(s, FERRY_OPT_RCVHWM, 1000);
    return s;
}
static int fb_listen(void *s, const char *url, char *ep, size_t len)
{
    if (bench_curve) {
        curve_keys();
        if (ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 1) ||
            ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, ck_srv_sec, 40) ||
            ferry_setopt_int(s, FERRY_OPT_CURVE_ALLOW_ANY, 1))
            return -1;
    }
    return ferry_listen(s, url) || ferry_socket_addr(s, ep, len);
}
static int fb_dial(void *s, const char *url)
{
    if (bench_curve) {
        curve_keys();
        if (ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, ck_cli_sec, 40) ||
            ferry_setopt(s, FERRY_OPT_CURVE_SERVERKEY, ck_srv_pub, 40))
            return -1;
    }
    return ferry_dial(s, url);
}
static int fb_send(void *s, const void *b, size_t n) { return ferry_send(s, b, n, 0); }
static int fb_recv(void *s, void *b, size_t cap)
{
    size_t n;
    return ferry_recv(s, b, cap, &n, 0);
}
static void fb_close(void *s) { ferry_close(s); }

static int fb_send_part(void *s, const void *b, size_t n, int more)
{
    return ferry_send(s, b, n, more ? FERRY_MORE : 0);
}

static int fb_recv_part(void *s, void *b, size_t cap, size_t *n, int *more)
{
    int64_t m = 0;
    int rc = ferry_recv(s, b, cap, n, 0);
    ferry_getopt_int(s, FERRY_OPT_RCVMORE, &m);
    *more = (int)m;
    return rc;
}
static int fb_proxy(void *front, void *back) { return ferry_proxy(front, back, NULL, NULL); }

const struct backend bench_ferry = {.name = "ferry",
                                    .open = fb_open,
                                    .listen = fb_listen,
                                    .dial = fb_dial,
                                    .send = fb_send,
                                    .recv = fb_recv,
                                    .close = fb_close,
                                    .send_part = fb_send_part,
                                    .recv_part = fb_recv_part,
                                    .proxy = fb_proxy};

/* libzmq's ABI (zmq.h, stable since 4.0): the few calls and constants used */
static struct {
    void *lib, *ctx;
    void *(*ctx_new)(void);
    int (*ctx_term)(void *);
    void *(*socket)(void *, int);
    int (*close)(void *);
    int (*bind)(void *, const char *);
    int (*connect)(void *, const char *);
    int (*send)(void *, const void *, size_t, int);
    int (*recv)(void *, void *, size_t, int);
    int (*setsockopt)(void *, int, const void *, size_t);
    int (*getsockopt)(void *, int, void *, size_t *);
    int (*proxy)(void *, void *, void *);
} zq;
enum {
    ZQ_REQ = 3,
    ZQ_REP = 4,
    ZQ_PULL = 7,
    ZQ_PUSH = 8,
    ZQ_DEALER = 5,
    ZQ_ROUTER = 6,
    ZQ_SNDMORE = 2,
    ZQ_RCVMORE = 13,
    ZQ_LINGER = 17,
    ZQ_SNDHWM = 23,
    ZQ_RCVHWM = 24,
    ZQ_LAST_ENDPOINT = 32,
    ZQ_RCVTIMEO = 27,
    ZQ_SNDTIMEO = 28,
    ZQ_CURVE_SERVER = 47,
    ZQ_CURVE_PUBLICKEY = 48,
    ZQ_CURVE_SECRETKEY = 49,
    ZQ_CURVE_SERVERKEY = 50
};

/* Loads a library and the symbols it must have (all or nothing). */
struct sym {
    const char *name;
    void **slot;
};
static void *load_lib(const char *soname, const struct sym *syms, size_t n)
{
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; lib && i < n; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (*syms[i].slot == NULL) {
            dlclose(lib);
            lib = NULL;
        }
    }
    return lib;
}

int bench_zmq_load(void)
{
    const struct sym syms[] = {
        {"zmq_ctx_new", (void **)&zq.ctx_new},
        {"zmq_ctx_term", (void **)&zq.ctx_term},
        {"zmq_socket", (void **)&zq.socket},
        {"zmq_close", (void **)&zq.close},
        {"zmq_bind", (void **)&zq.bind},
        {"zmq_connect", (void **)&zq.connect},
        {"zmq_send", (void **)&zq.send},
        {"zmq_recv", (void **)&zq.recv},
        {"zmq_setsockopt", (void **)&zq.setsockopt},
        {"zmq_getsockopt", (void **)&zq.getsockopt},
        {"zmq_proxy", (void **)&zq.proxy},
    };
    if (zq.lib == NULL)
        zq.lib = load_lib("libzmq.so.5", syms, sizeof syms / sizeof syms[0]);
    return zq.lib != NULL;
}

static void *zb_open(int type)
{
    int t = type == FERRY_REQ      ? ZQ_REQ
            : type == FERRY_REP    ? ZQ_REP
            : type == FERRY_PUSH   ? ZQ_PUSH
            : type == FERRY_DEALER ? ZQ_DEALER
            : type == FERRY_ROUTER ? ZQ_ROUTER
                                   : ZQ_PULL;
    if (zq.ctx == NULL)
        zq.ctx = zq.ctx_new();
    void *s = zq.socket(zq.ctx, t);
    int hwm = 1000, linger = 0, timeout = 30000; /* as ferry's: a dead peer is an error */
    zq.setsockopt(s, ZQ_RCVTIMEO, &timeout, sizeof timeout);
    zq.setsockopt(s, ZQ_SNDTIMEO, &timeout, sizeof timeout);
    zq.setsockopt(s, ZQ_SNDHWM, &hwm, sizeof hwm);
    zq.setsockopt(s, ZQ_RCVHWM, &hwm, sizeof hwm);
    zq.setsockopt(s, ZQ_LINGER, &linger, sizeof linger);
    return s;
}
static int zb_listen(void *s, const char *url, char *ep, size_t len)
{
    int one = 1;
    if (bench_curve) {
        curve_keys();
        if (zq.setsockopt(s, ZQ_CURVE_SERVER, &one, sizeof one) ||
            zq.setsockopt(s, ZQ_CURVE_SECRETKEY, ck_srv_sec, 40))
            return -1;
    }
    return zq.bind(s, url) || zq.getsockopt(s, ZQ_LAST_ENDPOINT, ep, &len);
}
static int zb_dial(void *s, const char *url)
{
    if (bench_curve) {
        curve_keys();
        if (zq.setsockopt(s, ZQ_CURVE_PUBLICKEY, ck_cli_pub, 40) ||
            zq.setsockopt(s, ZQ_CURVE_SECRETKEY, ck_cli_sec, 40) ||
            zq.setsockopt(s, ZQ_CURVE_SERVERKEY, ck_srv_pub, 40))
            return -1;
    }
    return zq.connect(s, url);
}
static int zb_send(void *s, const void *b, size_t n) { return zq.send(s, b, n, 0) < 0; }
static int zb_recv(void *s, void *b, size_t cap) { return zq.recv(s, b, cap, 0) < 0; }
int bench_zmq_inproc; /* both sockets in one process share the context */
static void zb_close(void *s)
{
    zq.close(s);
    if (!bench_zmq_inproc) {
        zq.ctx_term(zq.ctx);
        zq.ctx = NULL;
    }
}
static int zb_send_part(void *s, const void *b, size_t n, int more)
{
    return zq.send(s, b, n, more ? ZQ_SNDMORE : 0) < 0;
}

static int zb_recv_part(void *s, void *b, size_t cap, size_t *n, int *more)
{
    int got = zq.recv(s, b, cap, 0);
    if (got < 0)
        return 1;
    *n = (size_t)got < cap ? (size_t)got : cap;
    int m = 0;
    size_t ml = sizeof m;
    zq.getsockopt(s, ZQ_RCVMORE, &m, &ml);
    *more = m;
    return 0;
}

/* zmq_proxy: until the context ends (here: the process is killed). */
static int zb_proxy(void *front, void *back) { return zq.proxy ? zq.proxy(front, back, NULL) : -1; }

const struct backend bench_zmq = {.name = "libzmq",
                                  .open = zb_open,
                                  .listen = zb_listen,
                                  .dial = zb_dial,
                                  .send = zb_send,
                                  .recv = zb_recv,
                                  .close = zb_close,
                                  .send_part = zb_send_part,
                                  .recv_part = zb_recv_part,
                                  .proxy = zb_proxy};

/* nng 1.x's ABI (nng.h): a socket and a listener are 32-bit ids passed by
 * value; the protocols open with nng_<proto>0_open. */
typedef struct {
    uint32_t id;
} nn_sock;
typedef struct {
    uint32_t id;
} nn_listener;
static struct {
    void *lib;
    int (*req_open)(nn_sock *), (*rep_open)(nn_sock *), (*push_open)(nn_sock *),
        (*pull_open)(nn_sock *);
    int (*listen)(nn_sock, const char *, nn_listener *, int);
    int (*dial)(nn_sock, const char *, void *, int);
    int (*send)(nn_sock, void *, size_t, int);
    int (*recv)(nn_sock, void *, size_t *, int);
    int (*close)(nn_sock);
    int (*set_int)(nn_sock, const char *, int);
    int (*listener_get_int)(nn_listener, const char *, int *);
    int (*set_ms)(nn_sock, const char *, int32_t);
    void (*fini)(void);
} nn;

int bench_nng_load(void)
{
    const struct sym syms[] = {
        {"nng_req0_open", (void **)&nn.req_open},
        {"nng_rep0_open", (void **)&nn.rep_open},
        {"nng_push0_open", (void **)&nn.push_open},
        {"nng_pull0_open", (void **)&nn.pull_open},
        {"nng_listen", (void **)&nn.listen},
        {"nng_dial", (void **)&nn.dial},
        {"nng_send", (void **)&nn.send},
        {"nng_recv", (void **)&nn.recv},
        {"nng_close", (void **)&nn.close},
        {"nng_socket_set_int", (void **)&nn.set_int},
        {"nng_listener_get_int", (void **)&nn.listener_get_int},
        {"nng_fini", (void **)&nn.fini},
        {"nng_socket_set_ms", (void **)&nn.set_ms},
    };
    if (nn.lib == NULL)
        nn.lib = load_lib("libnng.so.1", syms, sizeof syms / sizeof syms[0]);
    return nn.lib != NULL;
}

static void *nb_open(int type)
{
    nn_sock *s = calloc(1, sizeof *s);
    int rc = type == FERRY_REQ    ? nn.req_open(s)
             : type == FERRY_REP  ? nn.rep_open(s)
             : type == FERRY_PUSH ? nn.push_open(s)
                                  : nn.pull_open(s);
    if (rc != 0)
        _exit(2);
    nn.set_int(*s, "send-buffer", 1000); /* queue depth, in messages, as the others */
    nn.set_int(*s, "recv-buffer", 1000);
    nn.set_ms(*s, "recv-timeout", 30000); /* as ferry's: a dead peer is an error */
    nn.set_ms(*s, "send-timeout", 30000);
    return s;
}
static int nb_listen(void *s, const char *url, char *ep, size_t len)
{
    char u[160];
    snprintf(u, sizeof u, "%s", url);
    char *star = strstr(u, ":*");
    if (star)
        strcpy(star, ":0");
    nn_listener l;
    if (nn.listen(*(nn_sock *)s, u, &l, 0) != 0)
        return -1;
    int port = 0;
    if (star && nn.listener_get_int(l, "tcp-bound-port", &port) == 0)
        snprintf(ep, len, "tcp://127.0.0.1:%d", port);
    else
        snprintf(ep, len, "%s", u);
    return 0;
}
static int nb_dial(void *s, const char *url) { return nn.dial(*(nn_sock *)s, url, NULL, 0); }
static int nb_send(void *s, const void *b, size_t n)
{
    return nn.send(*(nn_sock *)s, (void *)b, n, 0);
}
static int nb_recv(void *s, void *b, size_t cap)
{
    size_t n = cap;
    return nn.recv(*(nn_sock *)s, b, &n, 0);
}
static void nb_close(void *s)
{
    nn.close(*(nn_sock *)s);
    free(s);
    /* nng's threads do not survive fork(): end them, so that the next
     * measurement's child starts nng afresh */
    nn.fini();
}
const struct backend bench_nng = {"nng",   nb_open,  nb_listen, nb_dial, nb_send,
                                  nb_recv, nb_close, NULL,      NULL,    NULL};

void bench_zmq_term(void)
{
    if (zq.ctx) {
        zq.ctx_term(zq.ctx);
        zq.ctx = NULL;
    }
}
