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

/* Called on every API entry: a store only when there is something to
 * clear (stores on the message path queue behind the ring's, and cost). */
void fy_err_clear(void)
{
    if (err_detail[0] != '\0')
        err_detail[0] = '\0';
}

void fy_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        int plain = *p >= 0x20 && *p < 0x7f && *p != '\\';
        size_t need = plain ? 1 : *p == '\\' ? 2 : 4;
        if (o + need >= cap)
            break;
        if (plain) {
            dst[o++] = (char)*p;
        } else if (*p == '\\') { /* doubled: a peer cannot write a fake escape */
            dst[o++] = '\\';
            dst[o++] = '\\';
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        }
    }
    dst[o] = '\0';
}

__attribute__((format(printf, 2, 0))) static void err_vset(int err, const char *fmt, va_list ap)
{
    char raw[sizeof err_detail];
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    if (n < 0)
        raw[0] = '\0';
    /* a detail may quote a peer's bytes: it reaches terminals and logs */
    fy_escape(err_detail, sizeof err_detail, raw);
    size_t len = strlen(err_detail);
    snprintf(err_detail + len, sizeof err_detail - len, ": %s", ferry_strerror(err));
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
