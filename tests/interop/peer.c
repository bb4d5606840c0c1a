/*
 * peer.c - one side of an interoperability test, built twice: against
 * ferry (ferry_interop_peer) and against libzmq (zmq_interop_peer, only in
 * the test build; the library never links libzmq). tests/interop/zpeer.py
 * plays the same roles with pyzmq, so any two of the three can be paired.
 *
 *   peer ROLE bind|connect URL [COUNT]
 *
 * Roles (each checks what it receives and exits 0 only if all was right):
 *   rep       echo every request back, COUNT requests (default: the vector)
 *   req       send each vector message, check the echo
 *   dealer    the same over DEALER (against an echoing ROUTER)
 *   router-echo  a ROUTER sending each message back to its sender, COUNT
 *             messages (default: the vector); $EXPECT_RID: the routing id
 *             every message must carry. Any role: $ROUTING_ID sets the
 *             socket's routing id
 *   dealer-req  the same over DEALER framing REQ's envelope itself: an
 *             empty part before each request and before each reply (a REP)
 *   pair-echo / pair-req   the same over PAIR
 *   push      send the vector, then COUNT messages "seq" + 8-byte number
 *   pull      receive and check the vector, then the COUNT numbers in order
 *   pub       publish "A<i>"+vector[i] and "B-noise" in a loop until killed
 *   sub       subscribe "A", receive until every vector message was seen,
 *             never a "B" message
 *   req-retry send COUNT numbered requests to a REP that may die: on
 *             ECONNRESET or timeout resend (ferry build only)
 *   dealer-bye  send "bye" to a ROUTER and leave
 *   router-mandatory  a ROUTER with ROUTER_MANDATORY: take the "bye", then
 *             send to its sender until that fails with EHOSTUNREACH (the
 *             dealer left; at most 10 s)
 *   xpub-welcome  (ferry build) an XPUB with XPUB_WELCOME_MSG "W": wait
 *             for a subscription to W, publish "Wlast"
 *   refused   (ferry build) bind or connect as TYPE=$PEER_TYPE and expect
 *             the peer to be refused for its socket type: exit 0 once
 *             FERRY_OPT_ERRORS counts it and no message got through
 *             ($EXPECT_COUNTER=refused and $EXPECT_WHY: another refusal)
 *
 * CURVE (any role): $CURVE_SERVER=SECRET makes the socket a server
 * ($CURVE_ALLOW=KEY,KEY... the client keys ferry admits, else any);
 * $CURVE_CLIENT=SECRET with $CURVE_SERVERKEY=PUBLIC a client. Both
 * sides then send heartbeats, sealed, in pub and sub (see main).
 *
 * A binding peer prints "ENDPOINT <url>" on stdout (the port resolved)
 * once it listens, so the test can start the other side.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef USE_ZMQ
#include <zmq.h>
#else
#include "ferry.h"
#endif

#define BIG (10u << 20)

struct part {
    unsigned char *data;
    size_t len;
};
struct msg {
    struct part p[8];
    size_t n;
};

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(i * 7 + seed);
    return b;
}

/* The test vector: single part, multipart, empty, the 255/256-byte short
 * and long frame boundary, and 10 MiB. */
static struct msg vec[7];
static size_t nvec;

static void vec_add(size_t n, const size_t *lens, const char **texts)
{
    struct msg *m = &vec[nvec];
    m->n = n;
    for (size_t i = 0; i < n; i++) {
        if (texts && texts[i]) {
            m->p[i].len = strlen(texts[i]);
            m->p[i].data = (unsigned char *)strdup(texts[i]);
        } else {
            m->p[i].len = lens[i];
            m->p[i].data = pattern(lens[i], (unsigned)(nvec * 16 + i));
        }
    }
    nvec++;
}

static void vec_init(void)
{
    const char *hello[] = {"hello"}, *abc[] = {"a", "bb", "ccc"}, *empty[] = {""};
    vec_add(1, NULL, hello);
    vec_add(3, NULL, abc);
    vec_add(1, NULL, empty);
    size_t l255[] = {255}, l256[] = {256}, mix[] = {255, 256, 0}, big[] = {BIG};
    vec_add(1, l255, NULL);
    vec_add(1, l256, NULL);
    vec_add(3, mix, NULL);
    vec_add(1, big, NULL);
}

static int msg_equal(const struct msg *a, const struct msg *b, size_t skip_b)
{
    if (a->n + skip_b != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct part *x = &a->p[i], *y = &b->p[i + skip_b];
        if (x->len != y->len || (x->len && memcmp(x->data, y->data, x->len) != 0))
            return 0;
    }
    return 1;
}

static void msg_free(struct msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->p[i].data);
    m->n = 0;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "peer[%d]: %s failed (%d)\n", (int)getpid(), what, rc);
    exit(2);
}

/* --- the two back ends ------------------------------------------------------- */

#ifdef USE_ZMQ
typedef void sock_t;
static void *ctx;
enum {
    T_PAIR = ZMQ_PAIR,
    T_PUB = ZMQ_PUB,
    T_SUB = ZMQ_SUB,
    T_REQ = ZMQ_REQ,
    T_REP = ZMQ_REP,
    T_PUSH = ZMQ_PUSH,
    T_PULL = ZMQ_PULL,
    T_DEALER = ZMQ_DEALER,
    T_ROUTER = ZMQ_ROUTER
};

static sock_t *p_open(int type)
{
    if (ctx == NULL)
        ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, type);
    int t = 10000, linger = 2000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &t, sizeof t);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &t, sizeof t);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

static void p_endpoint(sock_t *s, int bind, const char *url)
{
    if (!bind) {
        if (zmq_connect(s, url) != 0)
            die("zmq_connect", errno);
        return;
    }
    if (zmq_bind(s, url) != 0)
        die("zmq_bind", errno);
    char ep[256];
    size_t len = sizeof ep;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
    printf("ENDPOINT %s\n", ep);
    fflush(stdout);
}

static int p_send(sock_t *s, const struct msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (zmq_send(s, m->p[i].data, m->p[i].len, i + 1 < m->n ? ZMQ_SNDMORE : 0) < 0)
            return -errno;
    return 0;
}

static int p_recv(sock_t *s, struct msg *m)
{
    m->n = 0;
    for (;;) {
        zmq_msg_t z;
        zmq_msg_init(&z);
        if (zmq_msg_recv(&z, s, 0) < 0) {
            int e = errno;
            zmq_msg_close(&z);
            msg_free(m);
            return -e;
        }
        size_t len = zmq_msg_size(&z);
        if (m->n < 8) {
            m->p[m->n].data = malloc(len ? len : 1);
            memcpy(m->p[m->n].data, zmq_msg_data(&z), len);
            m->p[m->n].len = len;
            m->n++;
        }
        int more = zmq_msg_more(&z);
        zmq_msg_close(&z);
        if (!more)
            return 0;
    }
}

static void p_subscribe(sock_t *s, const char *pfx)
{
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, pfx, strlen(pfx));
}

static void p_routing_id(sock_t *s, const char *id)
{
    zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
}

static void p_curve(sock_t *s, const char *server_secret, const char *allow,
                    const char *client_secret, const char *server_key, int heartbeat)
{
    (void)allow; /* without a ZAP handler libzmq admits every client key */
    int one = 1, ivl = 100, hb_timeout = 3000; /* PING and PONG travel sealed too */
    if (heartbeat) {
        zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout);
    }
    if (server_secret) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, server_secret, 40);
        return;
    }
    char pub[41];
    zmq_curve_public(pub, client_secret);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client_secret, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 40);
}

static void p_mandatory(sock_t *s)
{
    int one = 1;
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
}

/* 1 if sending m now fails because its peer is unknown or gone. */
static int p_unreachable(sock_t *s, const struct msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (zmq_send(s, m->p[i].data, m->p[i].len,
                     ZMQ_DONTWAIT | (i + 1 < m->n ? ZMQ_SNDMORE : 0)) < 0)
            return errno == EHOSTUNREACH;
    return 0;
}

static void p_close(sock_t *s)
{
    zmq_close(s);
    zmq_ctx_term(ctx);
}
#else
typedef ferry_socket sock_t;
enum {
    T_PAIR = FERRY_PAIR,
    T_PUB = FERRY_PUB,
    T_SUB = FERRY_SUB,
    T_REQ = FERRY_REQ,
    T_REP = FERRY_REP,
    T_PUSH = FERRY_PUSH,
    T_PULL = FERRY_PULL,
    T_DEALER = FERRY_DEALER,
    T_ROUTER = FERRY_ROUTER
};

static sock_t *p_open(int type)
{
    ferry_socket *s;
    int rc = ferry_socket_open(&s, type);
    if (rc != 0)
        die("ferry_socket_open", rc);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_LINGER, 2000);
    ferry_setopt_int(s, FERRY_OPT_MAXMSGSIZE, 64 << 20);
    return s;
}

static void p_endpoint(sock_t *s, int bind, const char *url)
{
    int rc = bind ? ferry_listen(s, url) : ferry_dial(s, url);
    if (rc != 0) {
        fprintf(stderr, "peer: %s %s: %s (%s)\n", bind ? "listen" : "dial", url, ferry_strerror(rc),
                ferry_errdetail());
        exit(2);
    }
    if (bind) {
        char ep[256];
        ferry_socket_addr(s, ep, sizeof ep);
        printf("ENDPOINT %s\n", ep);
        fflush(stdout);
    }
}

static int p_send(sock_t *s, const struct msg *m)
{
    for (size_t i = 0; i < m->n; i++) {
        int rc = ferry_send(s, m->p[i].data, m->p[i].len, i + 1 < m->n ? FERRY_MORE : 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int p_recv(sock_t *s, struct msg *m)
{
    m->n = 0;
    for (;;) {
        ferry_msg *f;
        int rc = ferry_msg_recv(s, &f, 0);
        if (rc != 0) {
            msg_free(m);
            return rc;
        }
        size_t len = ferry_msg_size(f);
        if (m->n < 8) {
            m->p[m->n].data = malloc(len ? len : 1);
            memcpy(m->p[m->n].data, ferry_msg_data(f), len);
            m->p[m->n].len = len;
            m->n++;
        }
        int more = ferry_msg_more(f);
        ferry_msg_free(f);
        if (!more)
            return 0;
    }
}

static void p_subscribe(sock_t *s, const char *pfx)
{
    ferry_setopt(s, FERRY_OPT_SUBSCRIBE, pfx, strlen(pfx));
}

static void p_routing_id(sock_t *s, const char *id)
{
    if (ferry_setopt(s, FERRY_OPT_ROUTING_ID, id, strlen(id)) != 0)
        die("routing id", -1);
}

static void p_curve(sock_t *s, const char *server_secret, const char *allow,
                    const char *client_secret, const char *server_key, int heartbeat)
{
    int rc = 0;
    if (heartbeat) { /* PING and PONG travel sealed too */
        rc |= ferry_setopt_int(s, FERRY_OPT_HEARTBEAT_IVL, 100);
        rc |= ferry_setopt_int(s, FERRY_OPT_HEARTBEAT_TIMEOUT, 3000);
    }
    if (server_secret) {
        rc |= ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 1);
        rc |= ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, server_secret, strlen(server_secret));
        if (allow == NULL)
            rc |= ferry_setopt_int(s, FERRY_OPT_CURVE_ALLOW_ANY, 1);
        for (const char *k = allow; k && *k; k += k[40] ? 41 : 40) /* "KEY,KEY" */
            rc |= ferry_setopt(s, FERRY_OPT_CURVE_ALLOW, k, 40);
    } else {
        rc |= ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, client_secret, strlen(client_secret));
        rc |= ferry_setopt(s, FERRY_OPT_CURVE_SERVERKEY, server_key, strlen(server_key));
    }
    if (rc != 0)
        die("curve options", rc);
}

static void p_mandatory(sock_t *s) { ferry_setopt_int(s, FERRY_OPT_ROUTER_MANDATORY, 1); }

static int p_unreachable(sock_t *s, const struct msg *m)
{
    for (size_t i = 0; i < m->n; i++) {
        int rc = ferry_send(s, m->p[i].data, m->p[i].len,
                            FERRY_DONTWAIT | (i + 1 < m->n ? FERRY_MORE : 0));
        if (rc != 0)
            return rc == FERRY_EHOSTUNREACH;
    }
    return 0;
}

static void p_close(sock_t *s) { ferry_close(s); }
#endif

/* --- roles -------------------------------------------------------------------- */

static int role_echo(sock_t *s, long count)
{
    for (long i = 0; i < count; i++) {
        struct msg m;
        int rc = p_recv(s, &m);
        if (rc != 0)
            die("echo: recv", rc);
        rc = p_send(s, &m);
        if (rc != 0)
            die("echo: send", rc);
        msg_free(&m);
    }
    return 0;
}

/* A ROUTER echoing each message to the peer it came from (the routing id
 * part sent back first); with expect, every id must be that string. */
static int role_router_echo(sock_t *s, long count, const char *expect)
{
    for (long i = 0; i < count; i++) {
        struct msg m;
        int rc = p_recv(s, &m);
        if (rc != 0)
            die("router-echo: recv", rc);
        if (m.n < 2 || (expect && (m.p[0].len != strlen(expect) ||
                                   memcmp(m.p[0].data, expect, m.p[0].len) != 0))) {
            fprintf(stderr, "peer: message %ld lacks the expected routing id\n", i);
            return 1;
        }
        rc = p_send(s, &m);
        if (rc != 0)
            die("router-echo: send", rc);
        msg_free(&m);
    }
    return 0;
}

static int role_dealer_bye(sock_t *s)
{
    struct msg m = {.n = 1};
    m.p[0] = (struct part){(unsigned char *)"bye", 3};
    int rc = p_send(s, &m);
    if (rc != 0)
        die("dealer-bye: send", rc);
    return 0;
}

static int role_router_mandatory(sock_t *s)
{
    p_mandatory(s);
    struct msg in;
    int rc = p_recv(s, &in);
    if (rc != 0)
        die("router-mandatory: recv", rc);
    if (in.n != 2 || in.p[1].len != 3 || memcmp(in.p[1].data, "bye", 3) != 0) {
        fprintf(stderr, "peer: wanted [id, \"bye\"]\n");
        return 1;
    }
    struct msg late = {.n = 2};
    late.p[0] = in.p[0];
    late.p[1] = (struct part){(unsigned char *)"late", 4};
    for (int i = 0; i < 500; i++) { /* polling for the peer's departure, 10 s */
        if (p_unreachable(s, &late)) {
            msg_free(&in);
            return 0;
        }
        usleep(20000);
    }
    fprintf(stderr, "peer: a message to the departed dealer never failed with EHOSTUNREACH\n");
    msg_free(&in);
    return 1;
}

/* delim: a DEALER talking to a REP frames REQ's envelope itself (an empty
 * part before the request, and one expected before the reply). */
static int role_client(sock_t *s, int delim)
{
    for (size_t i = 0; i < nvec; i++) {
        struct msg framed = {.n = vec[i].n + 1};
        framed.p[0] = (struct part){(unsigned char *)"", 0};
        memcpy(framed.p + 1, vec[i].p, vec[i].n * sizeof *vec[i].p);
        int rc = p_send(s, delim ? &framed : &vec[i]);
        if (rc != 0)
            die("client: send", rc);
        struct msg m;
        rc = p_recv(s, &m);
        if (rc != 0)
            die("client: recv", rc);
        if (!msg_equal(&vec[i], &m, delim ? 1 : 0) || (delim && m.p[0].len != 0)) {
            fprintf(stderr, "peer: reply %zu differs from the request\n", i);
            return 1;
        }
        msg_free(&m);
    }
    return 0;
}

static void put_seq(unsigned char *b, uint64_t v)
{
    memcpy(b, "seq", 3);
    for (int i = 0; i < 8; i++)
        b[3 + i] = (unsigned char)(v >> (56 - 8 * i));
}

static int role_push(sock_t *s, long count)
{
    for (size_t i = 0; i < nvec; i++) {
        int rc = p_send(s, &vec[i]);
        if (rc != 0)
            die("push: send", rc);
    }
    unsigned char b[11];
    struct msg m = {.n = 1};
    m.p[0].data = b;
    m.p[0].len = sizeof b;
    for (long k = 0; k < count; k++) {
        put_seq(b, (uint64_t)k);
        int rc = p_send(s, &m);
        if (rc != 0)
            die("push: send seq", rc);
    }
    return 0;
}

static int role_pull(sock_t *s, long count)
{
    for (size_t i = 0; i < nvec; i++) {
        struct msg m;
        int rc = p_recv(s, &m);
        if (rc != 0)
            die("pull: recv", rc);
        if (!msg_equal(&vec[i], &m, 0)) {
            fprintf(stderr, "peer: message %zu differs\n", i);
            return 1;
        }
        msg_free(&m);
    }
    unsigned char want[11];
    for (long k = 0; k < count; k++) {
        struct msg m;
        int rc = p_recv(s, &m);
        if (rc != 0) {
            fprintf(stderr, "peer: sequence message %ld of %ld not received\n", k, count);
            die("pull: recv seq", rc);
        }
        put_seq(want, (uint64_t)k);
        if (m.n != 1 || m.p[0].len != sizeof want || memcmp(m.p[0].data, want, sizeof want)) {
            fprintf(stderr, "peer: sequence message %ld wrong (lost, duplicated or reordered)\n",
                    k);
            return 1;
        }
        msg_free(&m);
    }
    return 0;
}

static int role_pub(sock_t *s)
{
    for (int round = 0; round < 3000; round++) {
        for (size_t i = 0; i < nvec; i++) {
            struct msg m = vec[i];
            unsigned char tag[2] = {'A', (unsigned char)i};
            memmove(&m.p[1], &vec[i].p[0], vec[i].n * sizeof m.p[0]);
            m.p[0].data = tag;
            m.p[0].len = 2;
            m.n = vec[i].n + 1;
            p_send(s, &m);
            struct msg noise = {.n = 1};
            noise.p[0].data = (unsigned char *)"B-noise";
            noise.p[0].len = 7;
            p_send(s, &noise);
        }
        usleep(10000); /* pacing only: the subscriber's checks do not depend on it */
    }
    return 0;
}

static int role_sub(sock_t *s)
{
    p_subscribe(s, "A");
    int seen[8] = {0};
    size_t nseen = 0;
    while (nseen < nvec) {
        struct msg m;
        int rc = p_recv(s, &m);
        if (rc != 0)
            die("sub: recv", rc);
        if (m.n < 1 || m.p[0].len != 2 || m.p[0].data[0] != 'A' || m.p[0].data[1] >= nvec) {
            fprintf(stderr, "peer: unexpected message (filter broken?)\n");
            return 1;
        }
        size_t i = m.p[0].data[1];
        if (!msg_equal(&vec[i], &m, 1)) {
            fprintf(stderr, "peer: published message %zu differs\n", i);
            return 1;
        }
        if (!seen[i]++)
            nseen++;
        msg_free(&m);
    }
    return 0;
}

#ifndef USE_ZMQ
static int role_req_retry(sock_t *s, long count)
{
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 3000);
    for (long k = 0; k < count; k++) {
        char want[32];
        snprintf(want, sizeof want, "%ld", k);
        struct msg m = {.n = 1};
        m.p[0].data = (unsigned char *)want;
        m.p[0].len = strlen(want);
        for (int tries = 0;; tries++) {
            if (tries > 20)
                die("req-retry: no reply after 20 tries", 0);
            int rc = p_send(s, &m);
            if (rc != 0)
                die("req-retry: send", rc);
            struct msg r;
            rc = p_recv(s, &r);
            if (rc == FERRY_ECONNRESET || rc == FERRY_ETIMEDOUT) {
                if (rc == FERRY_ETIMEDOUT) { /* REQ still waits: start over */
                    ferry_close(s);
                    die("req-retry: timed out waiting for a reply", rc);
                }
                continue; /* the REP died: send again (the dialer reconnects) */
            }
            if (rc != 0)
                die("req-retry: recv", rc);
            int ok =
                r.n == 1 && r.p[0].len == strlen(want) && !memcmp(r.p[0].data, want, r.p[0].len);
            msg_free(&r);
            if (!ok) {
                fprintf(stderr, "peer: wrong reply to request %ld\n", k);
                return 1;
            }
            break;
        }
    }
    return 0;
}

static int role_refused(sock_t *s)
{
    /* The peer (of an incompatible type, or with a key we do not admit:
     * $EXPECT_COUNTER=refused and $EXPECT_WHY) connects or is connected
     * to; it must be refused: counted, never a peer. */
    const char *want = getenv("EXPECT_WHY") ? getenv("EXPECT_WHY") : "socket type";
    int counter = getenv("EXPECT_COUNTER") && strcmp(getenv("EXPECT_COUNTER"), "refused") == 0
                      ? FERRY_OPT_REFUSED
                      : FERRY_OPT_ERRORS;
    for (int i = 0; i < 500; i++) {
        int64_t errors = 0, peers = 0;
        ferry_getopt_int(s, counter, &errors);
        ferry_getopt_int(s, FERRY_OPT_PEERS, &peers);
        if (peers > 0) {
            fprintf(stderr, "peer: an incompatible peer was admitted\n");
            return 1;
        }
        if (errors > 0) {
            char why[256];
            ferry_socket_drop_reason(s, why, sizeof why);
            if (strstr(why, want) == NULL) {
                fprintf(stderr, "peer: dropped for another reason: %s\n", why);
                return 1;
            }
            printf("REFUSED %s\n", why);
            return 0;
        }
        /* waiting for an event in another process: poll the counter */
        ferry_wait_peers(s, 1, 20);
    }
    fprintf(stderr, "peer: the incompatible peer was never refused\n");
    return 1;
}
#endif

#ifndef USE_ZMQ
static int role_xpub_welcome(sock_t *s)
{
    struct msg sub;
    int rc = p_recv(s, &sub); /* the subscriber's "\x01W" */
    if (rc != 0)
        die("xpub-welcome: recv", rc);
    if (sub.n != 1 || sub.p[0].len != 2 || memcmp(sub.p[0].data, "\x01W", 2) != 0) {
        fprintf(stderr, "peer: wanted the subscription to W\n");
        return 1;
    }
    msg_free(&sub);
    struct msg m = {.n = 1};
    m.p[0] = (struct part){(unsigned char *)"Wlast", 5};
    rc = p_send(s, &m);
    if (rc != 0)
        die("xpub-welcome: send", rc);
    return 0;
}
#endif

static int type_of(const char *role)
{
    static const struct {
        const char *role;
        int type;
    } t[] = {{"rep", T_REP},
             {"req", T_REQ},
             {"pair-echo", T_PAIR},
             {"pair-req", T_PAIR},
             {"push", T_PUSH},
             {"pull", T_PULL},
             {"pub", T_PUB},
             {"sub", T_SUB},
             {"req-retry", T_REQ},
             {"dealer", T_DEALER},
             {"dealer-req", T_DEALER},
             {"router-echo", T_ROUTER},
             {"dealer-bye", T_DEALER},
             {"router-mandatory", T_ROUTER},
#ifndef USE_ZMQ
             {"xpub-welcome", FERRY_XPUB}
#endif
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].role, role) == 0)
            return t[i].type;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ROLE bind|connect URL [COUNT]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *role = argv[1];
    int bind = strcmp(argv[2], "bind") == 0;
    long count = argc > 4 ? atol(argv[4]) : -1;
    vec_init();
    int type = type_of(role);
#ifndef USE_ZMQ
    if (strcmp(role, "refused") == 0) {
        const char *pt = getenv("PEER_TYPE");
        type = pt ? atoi(pt) : -1;
    }
#endif
    if (type < 0) {
        fprintf(stderr, "peer: unknown role %s\n", role);
        return 2;
    }
    sock_t *s = p_open(type);
    if (getenv("ROUTING_ID"))
        p_routing_id(s, getenv("ROUTING_ID"));
    /* Heartbeats only in PUB/SUB, where no side exits on its last send (the
     * publisher is stopped once its subscriber is satisfied). libzmq (and
     * so pyzmq) closes without reading what arrived last; input left unread
     * at close makes the kernel answer with RST, and an RST discards what
     * the other side had received but not read. A REP, PUSH or echoing
     * ROUTER that exits once its linger lets it would do that to its REQ,
     * PULL or DEALER whenever a PING or PONG reached it late. */
    int heartbeat = strcmp(role, "pub") == 0 || strcmp(role, "sub") == 0;
    if (getenv("CURVE_SERVER") || getenv("CURVE_CLIENT")) /* keys: 40 characters of Z85 */
        p_curve(s, getenv("CURVE_SERVER"), getenv("CURVE_ALLOW"), getenv("CURVE_CLIENT"),
                getenv("CURVE_SERVERKEY"), heartbeat);
#ifndef USE_ZMQ
    if (strcmp(role, "xpub-welcome") == 0)
        ferry_setopt(s, FERRY_OPT_XPUB_WELCOME_MSG, "W", 1);
#endif
    p_endpoint(s, bind, argv[3]);
    int rc;
    if (strcmp(role, "router-echo") == 0)
        rc = role_router_echo(s, count >= 0 ? count : (long)nvec, getenv("EXPECT_RID"));
    else if (strcmp(role, "rep") == 0 || strcmp(role, "pair-echo") == 0)
        rc = role_echo(s, count >= 0 ? count : (long)nvec);
    else if (strcmp(role, "req") == 0 || strcmp(role, "pair-req") == 0 ||
             strcmp(role, "dealer") == 0)
        rc = role_client(s, 0);
    else if (strcmp(role, "dealer-req") == 0)
        rc = role_client(s, 1);
    else if (strcmp(role, "dealer-bye") == 0)
        rc = role_dealer_bye(s);
    else if (strcmp(role, "router-mandatory") == 0)
        rc = role_router_mandatory(s);
    else if (strcmp(role, "push") == 0)
        rc = role_push(s, count >= 0 ? count : 0);
    else if (strcmp(role, "pull") == 0)
        rc = role_pull(s, count >= 0 ? count : 0);
    else if (strcmp(role, "pub") == 0)
        rc = role_pub(s);
    else if (strcmp(role, "sub") == 0)
        rc = role_sub(s);
#ifndef USE_ZMQ
    else if (strcmp(role, "req-retry") == 0)
        rc = role_req_retry(s, count >= 0 ? count : 100);
    else if (strcmp(role, "refused") == 0)
        rc = role_refused(s);
    else if (strcmp(role, "xpub-welcome") == 0)
        rc = role_xpub_welcome(s);
#endif
    else
        rc = 2;
    p_close(s);
    for (size_t i = 0; i < nvec; i++)
        msg_free(&vec[i]);
    return rc;
}
