/*
 * auth.c - CURVE settings and admission (auth.h). The allow file is read
 * with the socket's mtx held, on whichever thread runs the handshake: it
 * is a small local file (FY_AUTH_FILE_MAX), and the alternative, admitting
 * on a stale list, is worse. Any doubt about the file admits nobody.
 */
#include "auth.h"

#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef unsigned char fy_key[32];

struct key_set {
    fy_key *v;
    size_t n, cap;
    int unsorted; /* keys were added since the last sort */
};

struct fy_auth {
    int server, allow_any;
    int have_secret, have_server;
    fy_key secret, pub, server_key;
    struct key_set keys; /* FERRY_OPT_CURVE_ALLOW */
    char *file;          /* FERRY_OPT_CURVE_ALLOW_FILE */
    struct key_set fkeys;
    int file_read;      /* fkeys and sig describe the file as last seen */
    struct stat sig;    /* dev, ino, size, mtime, ctime of that read */
    char file_err[160]; /* why the file admits nobody now, or "" */
};

int fy_auth_is_opt(int opt)
{
    return opt >= FERRY_OPT_CURVE_SERVER && opt <= FERRY_OPT_CURVE_ALLOW_ANY;
}

static int key_cmp(const void *a, const void *b) { return memcmp(a, b, sizeof(fy_key)); }

static void set_wipe(struct key_set *k)
{
    free(k->v);
    memset(k, 0, sizeof *k);
}

static int set_add(struct key_set *k, const fy_key key)
{
    if (k->n == FY_AUTH_KEYS_MAX)
        return FERRY_ENOSPC;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        fy_key *v = realloc(k->v, cap * sizeof *v);
        if (v == NULL)
            return FERRY_ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    memcpy(k->v[k->n++], key, sizeof(fy_key));
    k->unsorted = 1;
    return 0;
}

/* Sorted when first asked after additions, so adding n keys costs one
 * sort rather than n. */
static int set_has(struct key_set *k, const fy_key key)
{
    if (k->unsorted && k->n)
        qsort(k->v, k->n, sizeof(fy_key), key_cmp);
    k->unsorted = 0;
    return k->n && bsearch(key, k->v, k->n, sizeof(fy_key), key_cmp) != NULL;
}

/* A key given to an option: 32 bytes, or 40 characters of Z85 (41 with a
 * NUL, as libzmq takes them). */
static int key_parse(fy_key out, const void *val, size_t len)
{
    if (val == NULL)
        return FERRY_EINVAL;
    if (len == 32) {
        memcpy(out, val, 32);
        return 0;
    }
    const char *t = val;
    if (len == 41 && t[40] == '\0')
        len = 40;
    char text[41];
    size_t n = 0;
    if (len != 40)
        return fy_err(FERRY_EINVAL, "curve: a key is 32 bytes or 40 characters of Z85");
    memcpy(text, t, 40);
    text[40] = '\0';
    int rc = ferry_z85_decode(out, 32, text, &n);
    sodium_memzero(text, sizeof text); /* it may be a secret key */
    return rc == 0 && n == 32
               ? 0
               : fy_err(FERRY_EINVAL, "curve: a key is 32 bytes or 40 characters of Z85");
}

static struct fy_auth *auth_get(ferry_socket *s)
{
    if (s->auth == NULL)
        s->auth = calloc(1, sizeof *s->auth);
    return s->auth;
}

static int set_bool(int *dst, const void *val, size_t len)
{
    int64_t v;
    if (len == sizeof(int64_t))
        memcpy(&v, val, sizeof v);
    else if (len == sizeof(int))
        v = *(const int *)val;
    else
        return fy_err(FERRY_EINVAL, "curve: this option takes an int (0 or 1)");
    if (v != 0 && v != 1)
        return fy_err(FERRY_EINVAL, "curve: this option takes 0 or 1");
    *dst = (int)v;
    return 0;
}

static int set_file(struct fy_auth *a, const char *path, size_t len)
{
    if (len >= 4096 || (len && memchr(path, '\0', len) != NULL))
        return fy_err(FERRY_EINVAL, "curve: the allow file's path is 1-4095 bytes without NUL");
    char *p = NULL;
    if (len) {
        p = malloc(len + 1);
        if (p == NULL)
            return FERRY_ENOMEM;
        memcpy(p, path, len);
        p[len] = '\0';
    }
    free(a->file);
    a->file = p;
    set_wipe(&a->fkeys);
    a->file_read = 0;
    return 0;
}

static int auth_set_locked(struct fy_auth *a, int opt, const void *val, size_t len)
{
    fy_key k;
    int rc = 0;
    switch (opt) {
    case FERRY_OPT_CURVE_SERVER:
        return set_bool(&a->server, val, len);
    case FERRY_OPT_CURVE_ALLOW_ANY:
        return set_bool(&a->allow_any, val, len);
    case FERRY_OPT_CURVE_SECRETKEY:
        if ((rc = key_parse(k, val, len)) != 0)
            break;
        memcpy(a->secret, k, 32);
        crypto_scalarmult_base(a->pub, a->secret);
        a->have_secret = 1;
        break;
    case FERRY_OPT_CURVE_PUBLICKEY:
        if ((rc = key_parse(k, val, len)) != 0)
            break;
        if (!a->have_secret || sodium_memcmp(k, a->pub, 32) != 0)
            rc = fy_err(FERRY_EINVAL, "curve: the public key is not the secret key's (set "
                                      "FERRY_OPT_CURVE_SECRETKEY first)");
        break;
    case FERRY_OPT_CURVE_SERVERKEY:
        if ((rc = key_parse(k, val, len)) == 0) {
            memcpy(a->server_key, k, 32);
            a->have_server = 1;
        }
        break;
    case FERRY_OPT_CURVE_ALLOW:
        if (len == 0) {
            set_wipe(&a->keys);
            break;
        }
        if ((rc = key_parse(k, val, len)) != 0)
            break;
        if ((rc = set_add(&a->keys, k)) == FERRY_ENOSPC) /* a repeat costs a slot, no more */
            rc = fy_err(FERRY_ENOSPC, "curve: at most %d allowed keys by option", FY_AUTH_KEYS_MAX);
        break;
    case FERRY_OPT_CURVE_ALLOW_FILE:
        rc = set_file(a, val, len);
        break;
    default:
        rc = FERRY_ENOTSUP;
    }
    sodium_memzero(k, sizeof k);
    return rc;
}

int fy_auth_setopt(ferry_socket *s, int opt, const void *val, size_t len)
{
    if (val == NULL && len != 0)
        return FERRY_EINVAL;
    if (sodium_init() < 0)
        return fy_err(FERRY_EIO, "libsodium could not start (no entropy source?)");
    pthread_mutex_lock(&s->mtx);
    struct fy_auth *a = auth_get(s);
    int rc = a == NULL ? FERRY_ENOMEM : 0;
    /* what the socket speaks is settled by its first endpoint: a later
     * change would make its connections disagree (and a shm:// endpoint
     * was allowed only because it was plain); who is admitted may change */
    int mechanism = opt == FERRY_OPT_CURVE_SERVER || opt == FERRY_OPT_CURVE_SECRETKEY ||
                    opt == FERRY_OPT_CURVE_SERVERKEY;
    if (rc == 0 && mechanism && (s->stream_tran != NULL || s->shm_tran != NULL))
        rc = fy_err(FERRY_ESTATE, "curve: the keys and the role are set before the first "
                                  "listen or dial");
    if (rc == 0)
        rc = auth_set_locked(a, opt, val, len);
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

int fy_auth_getopt(ferry_socket *s, int opt, void *val, size_t *len)
{
    if (len == NULL || val == NULL)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->mtx);
    struct fy_auth *a = s->auth;
    int rc = 0;
    if (opt == FERRY_OPT_CURVE_PUBLICKEY || opt == FERRY_OPT_CURVE_SERVERKEY) {
        const unsigned char *k =
            opt == FERRY_OPT_CURVE_PUBLICKEY ? (a ? a->pub : NULL) : (a ? a->server_key : NULL);
        int have = a && (opt == FERRY_OPT_CURVE_PUBLICKEY ? a->have_secret : a->have_server);
        if (!have)
            rc = fy_err(FERRY_ENOENT, "curve: that key is not set");
        else if (*len >= 41)
            rc = ferry_z85_encode(val, *len, k, 32), *len = 41;
        else if (*len >= 32)
            memcpy(val, k, 32), *len = 32;
        else
            rc = FERRY_ENOSPC;
    } else if (opt == FERRY_OPT_CURVE_SERVER || opt == FERRY_OPT_CURVE_ALLOW_ANY) {
        int64_t v = a ? (opt == FERRY_OPT_CURVE_SERVER ? a->server : a->allow_any) : 0;
        if (*len >= sizeof v)
            memcpy(val, &v, sizeof v), *len = sizeof v;
        else if (*len >= sizeof(int))
            *(int *)val = (int)v, *len = sizeof(int);
        else
            rc = FERRY_EINVAL;
    } else {
        rc = fy_err(FERRY_EACCES, "curve: secret keys and key lists are not read back");
    }
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

int fy_auth_mech(const ferry_socket *s)
{
    const struct fy_auth *a = s->auth;
    if (a == NULL)
        return FY_MECH_NULL;
    if (a->server && a->have_secret)
        return FY_MECH_CURVE_SERVER;
    if (!a->server && a->have_server && a->have_secret)
        return FY_MECH_CURVE_CLIENT;
    return FY_MECH_NULL;
}

void fy_auth_keys(const ferry_socket *s, unsigned char secret[32], unsigned char server_key[32])
{
    memcpy(secret, s->auth->secret, 32);
    memcpy(server_key, s->auth->server_key, 32);
}

int fy_auth_endpoint_ok(ferry_socket *s, int secure)
{
    pthread_mutex_lock(&s->mtx);
    const struct fy_auth *a = s->auth;
    int rc = 0;
    int mech = fy_auth_mech(s);
    if (a == NULL || (!a->server && !a->have_server && !a->have_secret))
        rc = 0; /* plain */
    else if (!secure)
        rc = fy_err(FERRY_ENOTSUP, "a CURVE socket takes only tcp:// and ipc:// endpoints "
                                   "(shm:// admits by uid: use a socket of its own)");
    else if (a->server && !a->have_secret)
        rc = fy_err(FERRY_EINVAL, "CURVE server without its secret key "
                                  "(FERRY_OPT_CURVE_SECRETKEY)");
    else if (mech == FY_MECH_CURVE_SERVER && !a->allow_any && a->keys.n == 0 && a->file == NULL)
        rc = fy_err(FERRY_EINVAL, "CURVE server admitting nobody: give client keys "
                                  "(FERRY_OPT_CURVE_ALLOW or _ALLOW_FILE), or say "
                                  "FERRY_OPT_CURVE_ALLOW_ANY");
    else if (!a->server && !a->have_server)
        rc = fy_err(FERRY_EINVAL, "CURVE client without the server's public key "
                                  "(FERRY_OPT_CURVE_SERVERKEY)");
    else if (!a->server && !a->have_secret)
        rc = fy_err(FERRY_EINVAL, "CURVE client without its secret key "
                                  "(FERRY_OPT_CURVE_SECRETKEY)");
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

/* --- the allow file ------------------------------------------------------------- */

static int file_fail(struct fy_auth *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int file_fail(struct fy_auth *a, const char *fmt, ...)
{
    set_wipe(&a->fkeys);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->file_err, sizeof a->file_err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses the file's text: a key a line, blank lines and '#' comments
 * allowed, spaces and a CR around a key ignored. */
static int file_parse(struct fy_auth *a, char *text, size_t len)
{
    long line = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        line++;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        char *q = e;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r'))
            q--;
        if (q > p && *p != '#') {
            fy_key k;
            if (q - p != 40 || key_parse(k, p, 40) != 0)
                return file_fail(a, "allow file %s: line %ld is not a 40-character Z85 key",
                                 a->file, line);
            if (set_add(&a->fkeys, k) != 0)
                return file_fail(a, "allow file %s: too many keys (line %ld)", a->file, line);
        }
        p = e + 1;
    }
    return 0;
}

static int same_file(const struct stat *x, const struct stat *y)
{
    return x->st_dev == y->st_dev && x->st_ino == y->st_ino && x->st_size == y->st_size &&
           x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec &&
           x->st_ctim.tv_sec == y->st_ctim.tv_sec && x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

/* Reads the file again if it changed since the last read. 0 when fkeys
 * holds it now; -1 with file_err set when it admits nobody. */
static int file_refresh(struct fy_auth *a)
{
    struct stat st;
    if (stat(a->file, &st) != 0) {
        a->file_read = 0;
        return file_fail(a, "allow file %s: %s", a->file, strerror(errno));
    }
    /* A file changed within the clock's granularity of our last read may
     * look unchanged: one changed in the last 2 s is read again anyway. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int settled = now.tv_sec - st.st_mtim.tv_sec > 2 && now.tv_sec - st.st_ctim.tv_sec > 2;
    if (a->file_read && settled && same_file(&st, &a->sig))
        return a->file_err[0] ? -1 : 0;
    if (!S_ISREG(st.st_mode)) { /* not opened at all: a device may act on open */
        a->file_read = 0;
        return file_fail(a, "allow file %s: not a regular file", a->file);
    }
    a->file_read = 0;
    a->file_err[0] = '\0';
    set_wipe(&a->fkeys);
    int fd = open(a->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return file_fail(a, "allow file %s: %s", a->file, strerror(e));
    }
    int rc = 0;
    char *text = NULL;
    if (!S_ISREG(st.st_mode))
        rc = file_fail(a, "allow file %s: not a regular file", a->file);
    else if (st.st_uid != geteuid() && st.st_uid != 0)
        rc = file_fail(a, "allow file %s: owned by another user", a->file);
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        rc = file_fail(a, "allow file %s: writable by group or others", a->file);
    else if (st.st_size > (off_t)FY_AUTH_FILE_MAX)
        rc = file_fail(a, "allow file %s: larger than 4 MiB", a->file);
    else if ((text = malloc((size_t)st.st_size + 1)) == NULL)
        rc = file_fail(a, "allow file %s: out of memory", a->file);
    size_t got = 0;
    while (rc == 0 && got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = file_fail(a, "allow file %s: %s", a->file,
                           n < 0 ? strerror(errno) : "shorter than it said");
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (rc == 0)
        rc = file_parse(a, text, got);
    free(text);
    a->sig = st; /* a bad file is not read again until it changes */
    a->file_read = 1;
    return rc;
}

int fy_auth_admit(ferry_socket *s, const unsigned char key[32], char *why, size_t cap)
{
    struct fy_auth *a = s->auth;
    if (a->allow_any || set_has(&a->keys, key))
        return 0;
    char z[41];
    ferry_z85_encode(z, sizeof z, key, 32);
    if (a->file != NULL) {
        if (file_refresh(a) != 0) {
            snprintf(why, cap, "client key %s refused: %s", z, a->file_err);
            return FERRY_EAUTH;
        }
        if (set_has(&a->fkeys, key))
            return 0;
    }
    snprintf(why, cap, "client key %s is not on the allow list", z);
    return FERRY_EAUTH;
}

void fy_auth_free(ferry_socket *s)
{
    struct fy_auth *a = s->auth;
    if (a == NULL)
        return;
    set_wipe(&a->keys);
    set_wipe(&a->fkeys);
    free(a->file);
    sodium_memzero(a, sizeof *a);
    free(a);
    s->auth = NULL;
}
