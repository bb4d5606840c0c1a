/*
 * make_corpus.c - writes the seed corpus for zmtp_fuzz.c: whole ZMTP 3.1
 * streams as a peer sends them (greeting, READY, then frames), so the fuzzer
 * starts past the greeting instead of having to discover 64 exact octets,
 * plus a few broken streams whose refusal paths it should keep covering.
 *
 *   make_corpus DIR      (DIR is created if missing; files are overwritten)
 *
 * Octets 1-8 of the greeting (padding, ignored by the decoder) are the
 * fuzzer's split table; some seeds set them so that both the small-piece
 * and the zmtp_dec_room paths are walked from the start.
 */
#include "transport/zmtp/zmtp.h"

#include "ferry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static unsigned char out[1 << 18];
static size_t n;
static const char *dir;
static int failed;

static void put(const void *p, size_t len)
{
    if (len > sizeof out - n) {
        fprintf(stderr, "make_corpus: seed too large\n");
        exit(1);
    }
    memcpy(out + n, p, len);
    n += len;
}

static void put_byte(unsigned char b) { put(&b, 1); }

/* A string literal's octets, NULs included, without its terminator. */
#define PUTS(lit) put(lit, sizeof lit - 1)

/* A greeting: ferry's own, with the minor version and the padding given. */
static void greet(int minor, const unsigned char pad[8])
{
    unsigned char g[ZMTP_GREETING_SIZE];
    zmtp_greeting(g);
    g[11] = (unsigned char)minor;
    if (pad)
        memcpy(g + 1, pad, 8);
    put(g, sizeof g);
}

static void ready(const char *type, int identity)
{
    unsigned char r[64];
    size_t len = zmtp_ready(r, sizeof r, type, identity);
    if (len == 0) {
        fprintf(stderr, "make_corpus: READY %s does not fit\n", type);
        exit(1);
    }
    put(r, len);
}

static void frame(int flags, const void *body, size_t len)
{
    unsigned char h[ZMTP_HDR_MAX];
    put(h, zmtp_frame_hdr(h, flags, len));
    if (len)
        put(body, len);
}

static void str(int flags, const char *s) { frame(flags, s, strlen(s)); }

static void cmd(const char *name, const void *data, size_t len)
{
    unsigned char c[600];
    size_t l = zmtp_command(c, sizeof c, name, data, len);
    if (l == 0) {
        fprintf(stderr, "make_corpus: command %s does not fit\n", name);
        exit(1);
    }
    put(c, l);
}

/* Writes the seed built so far to DIR/name and starts the next. */
static void save(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(out, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: %s: %s\n", path, strerror(errno));
        failed = 1;
    }
    n = 0;
}

static unsigned char pat[70000];

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    dir = argv[1];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (unsigned char)(i * 7 + (i >> 8));
    /* split tables: small pieces; pieces through zmtp_dec_room; libzmq's padding */
    static const unsigned char small[8] = {3, 1, 7, 2, 0, 5, 11, 1};
    static const unsigned char room[8] = {0x90, 2, 0xff, 9, 0x81, 0, 0xa0, 40};
    static const unsigned char libzmq[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    char name[64];

    /* the handshake of every socket type; libzmq adds an empty Identity
     * for REQ, DEALER and ROUTER */
    static const char *const types[] = {"REQ",  "REP",  "DEALER", "ROUTER", "PUB", "SUB",
                                        "XPUB", "XSUB", "PUSH",   "PULL",   "PAIR"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int id =
            !strcmp(types[i], "REQ") || !strcmp(types[i], "DEALER") || !strcmp(types[i], "ROUTER");
        greet(1, i % 2 ? libzmq : NULL);
        ready(types[i], id);
        snprintf(name, sizeof name, "ready-%s", types[i]);
        save(name);
    }

    /* short frames, single and multipart */
    greet(1, small);
    ready("PULL", 0);
    str(0, "hello");
    str(ZMTP_MORE, "hello");
    str(ZMTP_MORE, "");
    str(0, "world");
    frame(0, NULL, 0);
    save("frames-short");

    /* the long header at its boundaries: 255, 256, 300, 70000 */
    greet(1, room);
    ready("PULL", 0);
    frame(0, pat, 255);
    frame(ZMTP_MORE, pat, 256);
    frame(ZMTP_MORE, pat, 300);
    frame(0, pat, 70000);
    save("frames-long");

    /* REQ/REP envelopes: libzmq's REQ send("hi") is 01 00 00 02 'hi' */
    greet(1, NULL);
    ready("REQ", 1);
    frame(ZMTP_MORE, NULL, 0);
    str(0, "hi");
    save("multipart-req");
    greet(1, small);
    ready("ROUTER", 1);
    frame(ZMTP_MORE, "\x00\x6b\x8b\x45\x67", 5); /* a ROUTER's generated routing id */
    frame(ZMTP_MORE, NULL, 0);
    str(0, "reply");
    save("multipart-router");

    /* heartbeats, also between the frames of one message (libzmq does that) */
    greet(1, small);
    ready("DEALER", 1);
    str(ZMTP_MORE, "A");
    cmd("PING", "\x00\x32", 2);
    str(ZMTP_MORE, "B");
    cmd("PONG", NULL, 0);
    str(0, "C");
    cmd("PING",
        "\x00\x00"
        "ab",
        4);
    cmd("PONG", "ab", 2);
    cmd("PING",
        "\x02\x8f"
        "0123456789abcdefXYZ",
        21);              /* context over 16 octets */
    cmd("PING", NULL, 0); /* no TTL: libzmq reads past it */
    save("ping-pong");

    /* 3.1 subscriptions as commands */
    greet(1, room);
    ready("SUB", 0);
    cmd("SUBSCRIBE", "abc", 3);
    cmd("SUBSCRIBE", NULL, 0);
    cmd("CANCEL", "abc", 3);
    cmd("SUBSCRIBE", pat, 250); /* near the libzmq 4.3.4 LONG bug, written correctly */
    save("subscribe");

    /* a 3.0 peer: subscriptions are data frames 01/00 + topic */
    greet(0, NULL);
    ready("XSUB", 0);
    frame(0,
          "\x01"
          "abc",
          4);
    frame(0,
          "\x00"
          "abc",
          4);
    frame(0, "\x01", 1);
    save("sub-30");

    /* the peer gives up */
    greet(1, NULL);
    ready("PUSH", 0);
    cmd("ERROR",
        "\x03"
        "400",
        4);
    str(0, "never seen");
    save("error");

    /* READY with an identity and an application property */
    greet(1, small);
    static const char props[] = "\x0bSocket-Type\x00\x00\x00\x06"
                                "DEALER"
                                "\x08Identity\x00\x00\x00\x03"
                                "abc"
                                "\x05X-Foo\x00\x00\x00\x03"
                                "bar";
    cmd("READY", props, sizeof props - 1);
    str(0, "x");
    save("ready-metadata");

    /* what libzmq tolerates: a long header on a short body, reserved bits,
     * a READY sent as a data frame, lower-case property names */
    greet(1, room);
    PUTS("\x04\x27\x05READY\x0bsocket-type\x00\x00\x00\x04PUSH\x08identity\x00\x00\x00\x00");
    PUTS("\x02\x00\x00\x00\x00\x00\x00\x00\x03"
         "abc");
    PUTS("\xf8\x01x");
    PUTS("\x00\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x04PULL");
    save("tolerated");

    /* broken streams */
    PUTS("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    save("bad-http");

    greet(1, NULL);
    memset(out + 16, ' ', 16); /* "NULL" padded with spaces */
    ready("PUSH", 0);
    save("bad-mech-spaces");

    greet(1, NULL);
    memcpy(out + 12, "PLAIN", 5);
    save("bad-plain");

    greet(1, NULL);
    out[10] = 2;
    save("bad-major2");

    greet(1, NULL);
    out[9] = 0x7e; /* signature end LSB 0: ZMTP 1.0 */
    save("bad-zmtp10");

    greet(1, NULL);
    ready("PUSH", 0);
    PUTS("\x05\x07\x04PING\x00\x32"); /* command with MORE */
    save("bad-command-more");

    greet(1, NULL);
    ready("PUSH", 0);
    PUTS("\x02\x80\x00\x00\x00\x00\x00\x00\x00"); /* 2^63 */
    save("bad-huge");

    greet(1, NULL);
    ready("PUSH", 0);
    PUTS("\x02\x00\x00\x00\x00\x00\x10\x00\x01"); /* 1 MiB + 1: over the fuzzer's limit */
    save("bad-over-limit");

    greet(1, small);
    PUTS("\x04\x1b\x05READY\x0bSocket-Type\x00\x00\x00\x04PUSH\x00"); /* stray octet */
    save("bad-ready-trailing");

    greet(1, small);
    PUTS("\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x09PUSH"); /* value runs out */
    save("bad-ready-truncated");

    greet(1, room);
    ready("PUSH", 0);
    frame(0, pat, 300);
    n -= 150; /* cut in the middle of the body */
    save("bad-cut-body");

    /* the libzmq 4.3.4 encoder bug (zmtp.md 3.4): an 8-octet size without LONG */
    greet(1, NULL);
    ready("SUB", 0);
    PUTS("\x04\x00\x00\x00\x00\x00\x00\x01\x00\x09SUBSCRIBE");
    put(pat, 247);
    save("bad-libzmq-long-bug");

    greet(1, NULL);
    ready("PUSH", 0);
    PUTS("\x04\x00");      /* a command without a name */
    PUTS("\x04\x02\x05R"); /* a name longer than the body */
    PUTS("\x04\x01\x00");  /* a name of length 0 */
    PUTS("\x04\x06\x05"
         "ERROR"); /* ERROR without its reason */
    save("bad-commands");

    put_byte(0xff);
    save("bad-one-octet");

    return failed;
}
