/*
 * msg.h - what `ferry send` (cmd_send.c) and `ferry recv` (cmd_msg.c)
 * share: their options, the socket they open, and printing a message in a
 * format (format.h).
 */
#ifndef FERRY_CLI_MSG_H
#define FERRY_CLI_MSG_H

#include "cli.h"
#include "curve_cli.h"
#include "format.h"

#include <signal.h>

struct msg_opts {
    const char *cmd;
    const char **bind, **connect;
    int nbind, nconnect;
    int type;
    const char **subs;
    int nsubs;
    long count;
    const char *reply;
    enum fmt_kind format;
    int timeout;
    struct cli_curve curve;
    /* send only */
    const char **files;
    int nfiles;
    int more;      /* the message arguments are the parts of one message */
    long interval; /* ms between two messages */
    long repeat;   /* send everything this many times; 0: until interrupted */
    char **msgs;
    int nmsgs;
};

/* Parses the options of send and recv (each then rejects the other's).
 * Returns -1 to go on, else the exit code (--help: CLI_OK). */
int msg_parse(int argc, char **argv, struct msg_opts *o, const char *help,
              const int *allowed_types);
/* Opens the socket and its endpoints; -1 on success, else the exit code. */
int msg_open_socket(struct msg_opts *o, ferry_socket **out);
void msg_opts_free(struct msg_opts *o);

/* Receives one whole message and writes it to stdout in format k, then
 * flushes. out is scratch space kept across calls. With first_out, a
 * single-part message is handed back (the caller echoes it). Returns 0,
 * a ferry error (negative), or MSG_ESTDOUT when stdout cannot be written
 * (errno says why). */
#define MSG_ESTDOUT 1
int msg_recv_print(ferry_socket *s, enum fmt_kind k, struct fmt_buf *out, ferry_msg **first_out);

/* SIGINT and SIGTERM set msg_stop (a second one acts as usual: the
 * process ends); SIGPIPE is ignored. */
extern volatile sig_atomic_t msg_stop;
void msg_install_signals(void);

#endif
