/*
 * curve_cli.c - the CURVE options of send, recv and proxy (curve_cli.h).
 * A secret key comes from a file (as `ferry keygen -o` writes it), never
 * from the command line, where any local user could read it in ps; the
 * file must not be open to group or others, as ssh insists for its keys.
 */
#include "curve_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char cli_curve_help[] =
    "CURVE (tcp:// and ipc://: encryption and keys, docs/security.md):\n"
    "      --curve-server FILE  be a CURVE server with the secret key in FILE\n"
    "                           (`ferry keygen -o FILE` makes one); also give\n"
    "      --allow-keys FILE    the client public keys admitted, one a line (read\n"
    "                           again when it changes), or\n"
    "      --allow-any          admit any client key (encryption only)\n"
    "      --curve-client FILE  be a CURVE client with the secret key in FILE,\n"
    "      --server-key KEY     talking to the server of this public key (40\n"
    "                           characters of Z85, or a file holding them)\n";

int cli_curve_opt(struct cli_curve *c, int opt, const char *arg)
{
    switch (opt) {
    case O_CURVE_SERVER:
        c->server_secret = arg;
        return 1;
    case O_CURVE_CLIENT:
        c->client_secret = arg;
        return 1;
    case O_SERVER_KEY:
        c->server_key = arg;
        return 1;
    case O_ALLOW_KEYS:
        c->allow_file = arg;
        return 1;
    case O_ALLOW_ANY:
        c->allow_any = 1;
        return 1;
    }
    return 0;
}

int cli_curve_on(const struct cli_curve *c) { return c->server_secret || c->client_secret; }

int cli_curve_check(const struct cli_curve *c, const char *cmd)
{
    if (c->server_secret && c->client_secret)
        return cli_usage(cmd, "--curve-server and --curve-client: one or the other");
    if (c->server_secret && !c->allow_file && !c->allow_any)
        return cli_usage(cmd, "--curve-server needs --allow-keys FILE or --allow-any");
    if (c->server_secret && c->allow_file && c->allow_any)
        return cli_usage(cmd, "--allow-keys and --allow-any: one or the other");
    if (!c->server_secret && (c->allow_file || c->allow_any))
        return cli_usage(cmd, "--allow-keys and --allow-any go with --curve-server");
    if (c->client_secret && !c->server_key)
        return cli_usage(cmd, "--curve-client needs --server-key KEY");
    if (!c->client_secret && c->server_key)
        return cli_usage(cmd, "--server-key goes with --curve-client");
    return -1;
}

/* The first line of path that is not blank or a '#' comment, trimmed, into
 * key (41 bytes). secret: the file must be ours and closed to others. 0,
 * or -1 with why. */
static int key_from_file(const char *path, int secret, char key[41], char *why, size_t wl)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, wl, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char buf[4096];
    ssize_t n = -1;
    if (!S_ISREG(st.st_mode))
        snprintf(why, wl, "not a regular file");
    else if (secret && (st.st_mode & 077))
        snprintf(why, wl, "a secret key file must not be open to group or others (chmod 600)");
    else if (secret && st.st_uid != geteuid())
        snprintf(why, wl, "a secret key file must belong to this user");
    else if ((n = read(fd, buf, sizeof buf - 1)) < 0)
        snprintf(why, wl, "%s", strerror(errno));
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *e = line + strlen(line);
        while (*line == ' ' || *line == '\t')
            line++;
        while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        if (*line == '\0' || *line == '#')
            continue;
        if (strlen(line) != 40) {
            snprintf(why, wl, "its first key is not 40 characters of Z85");
            return -1;
        }
        memcpy(key, line, 41);
        return 0;
    }
    snprintf(why, wl, "no key in it");
    return -1;
}

static int set_key(ferry_socket *s, int opt, const char *key, const char *cmd, const char *what)
{
    int rc = ferry_setopt(s, opt, key, strlen(key));
    return rc == 0 ? -1 : cli_fail(rc, "%s: %s", cmd, what);
}

int cli_curve_apply(const struct cli_curve *c, ferry_socket *s, const char *cmd)
{
    if (!cli_curve_on(c))
        return -1;
    char secret[41], server[41], why[160];
    const char *file = c->server_secret ? c->server_secret : c->client_secret;
    if (key_from_file(file, 1, secret, why, sizeof why) != 0) {
        fprintf(stderr, "ferry: %s: secret key file %s: %s\n", cmd, file, why);
        return CLI_FAIL;
    }
    int rc = set_key(s, FERRY_OPT_CURVE_SECRETKEY, secret, cmd, "the secret key");
    memset(secret, 0, sizeof secret);
    if (rc >= 0)
        return rc;
    if (c->server_secret) {
        if ((rc = ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 1)) != 0)
            return cli_fail(rc, "%s: --curve-server", cmd);
        if (c->allow_any)
            rc = ferry_setopt_int(s, FERRY_OPT_CURVE_ALLOW_ANY, 1);
        else
            rc = ferry_setopt(s, FERRY_OPT_CURVE_ALLOW_FILE, c->allow_file, strlen(c->allow_file));
        return rc == 0 ? -1 : cli_fail(rc, "%s: --allow-keys", cmd);
    }
    const char *key = c->server_key;
    if (strlen(key) != 40 || ferry_z85_decode(server, sizeof server, key, NULL) != 0) {
        if (key_from_file(key, 0, server, why, sizeof why) != 0) /* not a key: a file of one */
            return cli_usage(
                cmd, "--server-key %s: neither 40 characters of Z85 nor a key file (%s)", key, why);
        key = server;
    }
    return set_key(s, FERRY_OPT_CURVE_SERVERKEY, key, cmd, "--server-key");
}
