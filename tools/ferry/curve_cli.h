/*
 * curve_cli.h - the CURVE options that `ferry send`, `recv` and `proxy`
 * share: --curve-server SECRETFILE [--allow-keys FILE | --allow-any] and
 * --curve-client SECRETFILE --server-key KEY.
 */
#ifndef FERRY_CLI_CURVE_H
#define FERRY_CLI_CURVE_H

#include "cli.h"

#include <getopt.h>

struct cli_curve {
    const char *server_secret; /* --curve-server: a file holding our secret key */
    const char *client_secret; /* --curve-client */
    const char *server_key;    /* --server-key: 40 characters of Z85, or a file of them */
    const char *allow_file;    /* --allow-keys */
    int allow_any;             /* --allow-any */
};

enum { O_CURVE_SERVER = 2000, O_CURVE_CLIENT, O_SERVER_KEY, O_ALLOW_KEYS, O_ALLOW_ANY };

/* Their getopt_long entries, for a command's option table. */
#define CLI_CURVE_OPTIONS                                                                          \
    {"curve-server", required_argument, 0, O_CURVE_SERVER},                                        \
        {"curve-client", required_argument, 0, O_CURVE_CLIENT},                                    \
        {"server-key", required_argument, 0, O_SERVER_KEY},                                        \
        {"allow-keys", required_argument, 0, O_ALLOW_KEYS},                                        \
    {                                                                                              \
        "allow-any", no_argument, 0, O_ALLOW_ANY                                                   \
    }

/* Their lines for a command's --help. */
extern const char cli_curve_help[];

/* Takes option opt if it is one of these: 1, else 0. */
int cli_curve_opt(struct cli_curve *c, int opt, const char *arg);

/* What must hold between them: -1, or the usage error's exit code. */
int cli_curve_check(const struct cli_curve *c, const char *cmd);

/* 1 when the options make s speak CURVE. */
int cli_curve_on(const struct cli_curve *c);

/* Sets them on s (before its endpoints): -1, or the exit code (a key file
 * that cannot be read, is open to others, or holds no key). */
int cli_curve_apply(const struct cli_curve *c, ferry_socket *s, const char *cmd);

#endif
