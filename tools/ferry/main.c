/*
 * main.c - `ferry`: the command table and dispatch. Each subcommand lives in
 * its own cmd_*.c and parses its own options (getopt_long), including
 * --help.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct cli_cmd commands[] = {
    {"ls", "list ferry objects on this machine (like ipcs)", cmd_ls},
    {"rm", "remove ferry objects by name (like ipcrm)", cmd_rm},
    {"stat", "live sockets and their counters: ferry stat [PID | URL] [--json]", cmd_stat},
    {"send", "send messages: ferry send --connect URL --type push|pub|req|pair [--format F] MSG...",
     cmd_send},
    {"recv",
     "receive and print messages: ferry recv --bind URL --type pull|sub|rep|pair [--format F]",
     cmd_recv},
    {"bench", "measure ferry against the machine's limits: ferry bench [SUITE...] [--quick]",
     cmd_bench},
    {"trace", "show a TCP connection's set-up and teardown: ferry trace [--scenario NAME]",
     cmd_trace},
    {"proxy",
     "move messages between two sockets: ferry proxy --type xsub-xpub|router-dealer|pull-push "
     "--frontend URL --backend URL",
     cmd_proxy},
    {"keygen", "a new CURVE key pair (Z85): ferry keygen [-o FILE]", cmd_keygen},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry <command> [options]\n"
               "       ferry <command> --help\n"
               "       ferry --version\n\n"
               "ferry: fast, reliable messaging between processes.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-6s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nformats (--format): text (default), quoted, json, hex, raw\n"
               "exit codes: 0 ok, 1 runtime failure, 2 usage error\n"
               "man pages: ferry(1), ferry-<command>(1)\n");
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("ferry: ", stderr);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, " (see 'ferry %s --help')\n", cmd);
    else
        fputs(" (see 'ferry --help')\n", stderr);
    return CLI_USAGE;
}

/* cli_fail and cli_fail_sock: the line, with s's drop reason after a
 * timeout when s is given. */
static int fail_line(ferry_socket *s, int err, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int fail_line(ferry_socket *s, int err, const char *fmt, va_list ap)
{
    fputs("ferry: ", stderr);
    vfprintf(stderr, fmt, ap);
    const char *d = ferry_errdetail();
    char note[300];
    int timeout = err == FERRY_ETIMEDOUT || err == FERRY_EAGAIN;
    fprintf(stderr, ": %s%s\n", d[0] ? d : ferry_strerror(err),
            s && timeout ? cli_drop_note(s, note, sizeof note) : "");
    return err == FERRY_EBADNAME ? CLI_USAGE : CLI_FAIL;
}

int cli_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_line(NULL, err, fmt, ap);
    va_end(ap);
    return rc;
}

const char *cli_drop_note(ferry_socket *s, char *buf, size_t len)
{
    char why[256];
    if (ferry_socket_drop_reason(s, why, sizeof why) != 0 || why[0] == '\0')
        return "";
    snprintf(buf, len, " (last connection dropped: %s)", why);
    return buf;
}

int cli_fail_sock(ferry_socket *s, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_line(s, err, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("ferry %s\n", ferry_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    return cli_usage(NULL, "unknown command '%s'", cmd);
}
