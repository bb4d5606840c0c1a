/*
 * cmd_keygen.c - `ferry keygen`: a new CURVE key pair, as Z85 text.
 * Without -o both keys go to stdout ("public: ..." and "secret: ..."); with
 * -o FILE the secret key goes to FILE (mode 0600, never over an existing
 * file) and the public key to FILE.pub and stdout.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char keygen_help[] =
    "usage: ferry keygen [-o FILE]\n"
    "\n"
    "Make a new CURVE key pair (Curve25519, written as 40 characters of Z85, as\n"
    "libzmq writes them).\n"
    "  (no option)    print 'public: KEY' and 'secret: KEY' on two lines\n"
    "  -o FILE        write the secret key (one line) to FILE, mode 0600, and the\n"
    "                 public key to FILE.pub; print the public key. Neither file\n"
    "                 may exist already: a secret key is never overwritten\n"
    "  -h, --help\n";

/* Writes line to path, created new with mode (never over an existing file,
 * never through a symlink). */
static int write_new(const char *path, const char *line, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t n = strlen(line);
    int rc = fchmod(fd, mode) == 0 && write(fd, line, n) == (ssize_t)n ? 0 : -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        unlink(path);
    return rc;
}

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    const char *out = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+o:h", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'h') {
            fputs(keygen_help, stdout);
            return CLI_OK;
        } else
            return cli_usage("keygen", "unknown option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return cli_usage("keygen", "unexpected argument '%s'", argv[optind]);
    if (out != NULL && out[0] == '\0')
        return cli_usage("keygen", "-o needs a file name");
    char pub[FERRY_KEY_TEXT], sec[FERRY_KEY_TEXT];
    int rc = ferry_curve_keypair(pub, sec);
    if (rc != 0)
        return cli_fail(rc, "keygen");
    if (out == NULL) {
        printf("public: %s\nsecret: %s\n", pub, sec);
    } else {
        char line[FERRY_KEY_TEXT + 1], pubpath[4096];
        if (snprintf(pubpath, sizeof pubpath, "%s.pub", out) >= (int)sizeof pubpath)
            return cli_usage("keygen", "-o: file name too long");
        snprintf(line, sizeof line, "%s\n", sec);
        rc = write_new(out, line, 0600);
        if (rc == 0) {
            snprintf(line, sizeof line, "%s\n", pub);
            rc = write_new(pubpath, line, 0644);
            if (rc != 0) {
                unlink(out);
                out = pubpath;
            }
        }
        memset(sec, 0, sizeof sec);
        memset(line, 0, sizeof line);
        if (rc != 0) {
            fprintf(stderr, "ferry: keygen: %s: %s\n", out, strerror(-rc));
            return CLI_FAIL;
        }
        printf("%s\n", pub);
    }
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}
