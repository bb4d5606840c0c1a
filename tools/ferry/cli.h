/*
 * cli.h - what every `ferry` subcommand shares.
 *
 * Exit codes (CONVENTIONS.md): 0 success, 1 runtime failure, 2 usage error.
 * Every failure prints one line on stderr: "ferry: <what>: <why>".
 * stdout carries data only.
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include "ferry.h"

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

struct cli_cmd {
    const char *name;
    const char *summary; /* one line for `ferry --help` */
    int (*run)(int argc, char **argv);
};

/* Prints "ferry: <fmt...>" on stderr and returns CLI_USAGE, with a hint to
 * run `ferry CMD --help`. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "ferry: <fmt...>: <detail or strerror(err)>" and returns CLI_FAIL,
 * or CLI_USAGE when err is a usage error (a bad name). */
int cli_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same for a wait on s that failed: a timeout says why the last
 * connection was dropped, if one was (a refused CURVE key, a peer of the
 * wrong type), since that is usually why nothing came. */
int cli_fail_sock(ferry_socket *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* That reason as " (last connection dropped: ...)", or "". */
const char *cli_drop_note(ferry_socket *s, char *buf, size_t len);

/* Writes s to f as a JSON string literal. */
#include <stdio.h>
void cli_json_str(FILE *f, const char *s);

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel's
 * choice for a bind to port 0), or -1. */
int cli_free_port(void);

int cmd_ls(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_proxy(int argc, char **argv);

#endif
