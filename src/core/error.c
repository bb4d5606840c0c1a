/*
 * error.c - the error list (FERRY_ERRNO_MAP in ferry.h) turned into names
 * and descriptions, and the per-thread error detail.
 *
 * Every string returned is constant: no static buffer for unknown codes
 * (that would not be thread-safe); unknown errno values are described by
 * glibc's strerrordesc_np(), which also returns constant strings.
 */
#include "fy.h"

#include <stdio.h>
#include <string.h>

#define ERR_DETAIL_MAX 512

static _Thread_local char err_detail[ERR_DETAIL_MAX];

const char *ferry_version(void) { return FERRY_VERSION_STRING; }

const char *ferry_strerror(int err)
{
    switch (err) {
#define XX(name, val, str)                                                                         \
    case (val):                                                                                    \
        return str;
        FERRY_ERRNO_MAP(XX)
#undef XX
    case 0:
        return "success";
    default:
        break;
    }
    if (err < 0 && err > -4000) {
        const char *s = strerrordesc_np(-err);
        if (s != NULL)
            return s;
    }
    return "unknown error";
}

const char *ferry_err_name(int err)
{
    switch (err) {
#define XX(name, val, str)                                                                         \
    case (val):                                                                                    \
        return "FERRY_" #name;
        FERRY_ERRNO_MAP(XX)
#undef XX
    default:
        return "FERRY_UNKNOWN";
    }
}

const char *ferry_errdetail(void) { return err_detail; }

void fy_err_clear(void) { err_detail[0] = '\0'; }

static void err_vset(int err, const char *fmt, va_list ap)
{
    int n = vsnprintf(err_detail, sizeof err_detail, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof err_detail)
        snprintf(err_detail + n, sizeof err_detail - (size_t)n, ": %s", ferry_strerror(err));
}

int fy_err(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
    return err;
}

int fy_syserr(const char *fmt, ...)
{
    int err = errno > 0 ? -errno : FERRY_EIO;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
    return err;
}
