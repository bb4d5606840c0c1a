/*
 * z85.c - Z85 (ZeroMQ RFC 32): binary as printable text, 4 bytes to 5
 * characters, the form CURVE keys are written in (40 characters for a
 * 32-byte key). Decoding is strict: a length that is not a multiple of 5,
 * a character outside the alphabet, or a group worth more than 32 bits is
 * refused, never guessed at.
 */
#include "../../core/fy.h"

#include <string.h>

static const char z85_chars[86] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  ".-:+=^!/*?&<>()[]{}@%$#";

int ferry_z85_encode(char *dest, size_t cap, const void *data, size_t size)
{
    fy_err_clear();
    if (dest == NULL || (data == NULL && size > 0) || size % 4 != 0)
        return fy_err(FERRY_EINVAL, "z85 encode: %zu bytes (a multiple of 4 is needed)", size);
    if (cap < size / 4 * 5 + 1)
        return fy_err(FERRY_ERANGE, "z85 encode: %zu bytes need %zu characters and a NUL", size,
                      size / 4 * 5);
    const unsigned char *b = data;
    for (size_t i = 0; i < size; i += 4) {
        uint32_t v =
            (uint32_t)b[i] << 24 | (uint32_t)b[i + 1] << 16 | (uint32_t)b[i + 2] << 8 | b[i + 3];
        for (int k = 4; k >= 0; k--) {
            dest[i / 4 * 5 + (size_t)k] = z85_chars[v % 85];
            v /= 85;
        }
    }
    dest[size / 4 * 5] = '\0';
    return 0;
}

/* The value of a Z85 character, or -1. */
static int z85_value(char c)
{
    const char *p = c ? memchr(z85_chars, c, 85) : NULL;
    return p ? (int)(p - z85_chars) : -1;
}

int ferry_z85_decode(void *dest, size_t cap, const char *text, size_t *size)
{
    fy_err_clear();
    if (dest == NULL || text == NULL)
        return FERRY_EINVAL;
    size_t n = strlen(text);
    if (n % 5 != 0)
        return fy_err(FERRY_EINVAL, "z85 decode: %zu characters (a multiple of 5 is needed)", n);
    if (cap < n / 5 * 4)
        return fy_err(FERRY_ERANGE, "z85 decode: %zu characters make %zu bytes", n, n / 5 * 4);
    unsigned char *out = dest;
    for (size_t i = 0; i < n; i += 5) {
        uint64_t v = 0;
        for (size_t k = 0; k < 5; k++) {
            int d = z85_value(text[i + k]);
            if (d < 0)
                return fy_err(FERRY_EINVAL, "z85 decode: character %zu is not Z85", i + k + 1);
            v = v * 85 + (uint64_t)d;
        }
        if (v > UINT32_MAX)
            return fy_err(FERRY_EINVAL, "z85 decode: group %zu is worth more than 32 bits",
                          i / 5 + 1);
        out[i / 5 * 4] = (unsigned char)(v >> 24);
        out[i / 5 * 4 + 1] = (unsigned char)(v >> 16);
        out[i / 5 * 4 + 2] = (unsigned char)(v >> 8);
        out[i / 5 * 4 + 3] = (unsigned char)v;
    }
    if (size)
        *size = n / 5 * 4;
    return 0;
}
