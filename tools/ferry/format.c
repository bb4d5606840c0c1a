/*
 * format.c - the message formats of the CLI (see format.h): one encoder
 * and one decoder per format, and the UTF-8 and base64 rules they share.
 *
 * Decoders read untrusted bytes: every index is checked against the line's
 * length (lines may hold NUL bytes, so nothing relies on a terminator), and
 * every failure says what is wrong and at which column (1-based).
 */
#include "format.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"text", "quoted", "json", "hex", "raw"};

int fmt_parse_name(const char *name, enum fmt_kind *out)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum fmt_kind)i;
            return 0;
        }
    return -1;
}

const char *fmt_name(enum fmt_kind k) { return names[k]; }

/* --- buffers and messages -------------------------------------------------- */

static int buf_reserve(struct fmt_buf *b, size_t more)
{
    if (more <= b->cap - b->len)
        return 0;
    if (more > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < more)
        cap *= 2;
    unsigned char *d = realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int fmt_buf_add(struct fmt_buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_byte(struct fmt_buf *b, unsigned char c)
{
    if (b->len == b->cap && buf_reserve(b, 1) != 0)
        return -1;
    b->data[b->len++] = c;
    return 0;
}

static int buf_str(struct fmt_buf *b, const char *s) { return fmt_buf_add(b, s, strlen(s)); }

void fmt_buf_free(struct fmt_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void fmt_msg_reset(struct fmt_msg *m)
{
    m->bytes.len = 0;
    m->nparts = 0;
}

void fmt_msg_free(struct fmt_msg *m)
{
    fmt_buf_free(&m->bytes);
    free(m->ends);
    memset(m, 0, sizeof *m);
}

/* Ends the part being built in m->bytes. */
static int msg_close_part(struct fmt_msg *m)
{
    if (m->nparts == m->partcap) {
        size_t cap = m->partcap ? m->partcap * 2 : 8;
        size_t *e = cap < SIZE_MAX / sizeof *e ? realloc(m->ends, cap * sizeof *e) : NULL;
        if (e == NULL)
            return -1;
        m->ends = e;
        m->partcap = cap;
    }
    m->ends[m->nparts++] = m->bytes.len;
    return 0;
}

int fmt_msg_add_part(struct fmt_msg *m, const void *p, size_t n)
{
    return fmt_buf_add(&m->bytes, p, n) == 0 ? msg_close_part(m) : -1;
}

const unsigned char *fmt_msg_part(const struct fmt_msg *m, size_t i, size_t *len)
{
    size_t start = i ? m->ends[i - 1] : 0;
    *len = m->ends[i] - start;
    return m->bytes.data ? m->bytes.data + start : (const unsigned char *)""; /* no NULL + 0 */
}

/* --- UTF-8 and base64 ------------------------------------------------------ */

size_t fmt_utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        if (c == 0xed)
            hi = 0x9f; /* UTF-16 surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else
        return 0; /* continuation byte, C0/C1 (overlong ASCII) or F5..FF */
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

int fmt_utf8_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = fmt_utf8_seq(p + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_encode(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    if (buf_reserve(out, (n + 2) / 3 * 4) != 0)
        return -1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        unsigned char *o = out->data + out->len;
        o[0] = (unsigned char)b64_alphabet[v >> 18];
        o[1] = (unsigned char)b64_alphabet[(v >> 12) & 63];
        o[2] = i + 1 < n ? (unsigned char)b64_alphabet[(v >> 6) & 63] : '=';
        o[3] = i + 2 < n ? (unsigned char)b64_alphabet[v & 63] : '=';
        out->len += 4;
    }
    return 0;
}

static int b64_value(unsigned char c)
{
    const char *at = c ? strchr(b64_alphabet, c) : NULL;
    return at ? (int)(at - b64_alphabet) : -1;
}

/* Standard base64 with its padding; returns NULL or what is wrong. */
static const char *b64_decode(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    if (n % 4 != 0)
        return "base64 length is not a multiple of 4";
    for (size_t i = 0; i < n; i += 4) {
        int last = i + 4 == n;
        int pad = last && p[i + 3] == '=' ? (p[i + 2] == '=' ? 2 : 1) : 0;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j >= 4 - (size_t)pad ? 0 : b64_value(p[i + j]);
            if (d < 0)
                return p[i + j] == '=' ? "misplaced '=' in base64" : "invalid base64 character";
            v = v << 6 | (uint32_t)d;
        }
        unsigned char b[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
        if (fmt_buf_add(out, b, 3 - (size_t)pad) != 0)
            return "out of memory";
    }
    return NULL;
}

/* --- encoders -------------------------------------------------------------- */

static int put_hex_escape(struct fmt_buf *out, unsigned char c)
{
    char e[5];
    snprintf(e, sizeof e, "\\x%02x", c);
    return fmt_buf_add(out, e, 4);
}

/* 1 if the UTF-8 sequence of l bytes at p is a C1 control (U+0080 to
 * U+009F: CSI, NEL... terminals obey them as they do ESC). */
static int is_c1(const unsigned char *p, size_t l) { return l == 2 && p[0] == 0xc2 && p[1] < 0xa0; }

static int enc_text(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    for (size_t i = 0; i < n;) {
        size_t l = fmt_utf8_seq(p + i, n - i);
        int keep = (l > 1 && !is_c1(p + i, l)) ||
                   (l == 1 && (p[i] == '\t' || (p[i] >= 0x20 && p[i] != 0x7f)));
        if (!keep)
            l = 1;
        if (keep ? fmt_buf_add(out, p + i, l) : put_hex_escape(out, p[i]))
            return -1;
        i += l;
    }
    return 0;
}

static int enc_quoted(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    if (buf_byte(out, '"'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        int rc;
        if (c == '\\' || c == '"')
            rc = buf_byte(out, '\\') || buf_byte(out, c);
        else if (c == '\n')
            rc = buf_str(out, "\\n");
        else if (c == '\t')
            rc = buf_str(out, "\\t");
        else if (c >= 0x20 && c < 0x7f)
            rc = buf_byte(out, c);
        else
            rc = put_hex_escape(out, c);
        if (rc)
            return -1;
    }
    return buf_byte(out, '"');
}

static int enc_json_string(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    static const char shorts[] = "\b\f\n\r\t"; /* their letters: "bfnrt" */
    if (buf_byte(out, '"'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        const char *s = c ? strchr(shorts, c) : NULL;
        int rc;
        if (is_c1(p + i, n - i < 2 ? 1 : 2)) { /* legal raw, but not on a terminal */
            char e[7];
            snprintf(e, sizeof e, "\\u%04x", p[++i]);
            rc = fmt_buf_add(out, e, 6);
        } else if (c == '"' || c == '\\')
            rc = buf_byte(out, '\\') || buf_byte(out, c);
        else if (s)
            rc = buf_byte(out, '\\') || buf_byte(out, (unsigned char)"bfnrt"[s - shorts]);
        else if (c < 0x20 || c == 0x7f) { /* DEL too: legal raw, but not on a terminal */
            char e[7];
            snprintf(e, sizeof e, "\\u%04x", c);
            rc = fmt_buf_add(out, e, 6);
        } else
            rc = buf_byte(out, c); /* the rest of valid UTF-8 is legal as is */
        if (rc)
            return -1;
    }
    return buf_byte(out, '"');
}

static int enc_json(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    if (fmt_utf8_valid(p, n))
        return enc_json_string(p, n, out);
    return buf_str(out, "{\"base64\": \"") || b64_encode(p, n, out) || buf_str(out, "\"}");
}

static int enc_hex(const unsigned char *p, size_t n, struct fmt_buf *out)
{
    static const char digits[] = "0123456789abcdef";
    if (buf_reserve(out, 2 * n) != 0) /* n < SIZE_MAX / 2: it is in memory */
        return -1;
    for (size_t i = 0; i < n; i++) {
        out->data[out->len++] = (unsigned char)digits[p[i] >> 4];
        out->data[out->len++] = (unsigned char)digits[p[i] & 15];
    }
    return 0;
}

int fmt_enc_part(enum fmt_kind k, size_t index, const unsigned char *p, size_t n,
                 struct fmt_buf *out)
{
    static const char *const seps[] = {"\t", " ", ", ", " | ", ""};
    if (index == 0 && k == FMT_JSON && buf_str(out, "{\"parts\": ["))
        return -1;
    if (index > 0 && buf_str(out, seps[k]))
        return -1;
    switch (k) {
    case FMT_TEXT:
        return enc_text(p, n, out);
    case FMT_QUOTED:
        return enc_quoted(p, n, out);
    case FMT_JSON:
        return enc_json(p, n, out);
    case FMT_HEX:
        return enc_hex(p, n, out);
    case FMT_RAW:
        return fmt_buf_add(out, p, n);
    }
    return -1;
}

int fmt_enc_end(enum fmt_kind k, size_t nparts, struct fmt_buf *out)
{
    if (k == FMT_RAW)
        return 0;
    if (k == FMT_JSON)
        return buf_str(out, nparts ? "]}\n" : "{\"parts\": []}\n");
    return buf_byte(out, '\n');
}

int fmt_encode(enum fmt_kind k, const struct fmt_msg *m, struct fmt_buf *out)
{
    for (size_t i = 0; i < m->nparts; i++) {
        size_t n;
        const unsigned char *p = fmt_msg_part(m, i, &n);
        if (fmt_enc_part(k, i, p, n, out) != 0)
            return -1;
    }
    return fmt_enc_end(k, m->nparts, out);
}

/* --- decoders -------------------------------------------------------------- */

/* A cursor over one line of input. */
struct cur {
    const unsigned char *p;
    size_t n, i;
    struct fmt_err *err;
};

static int cur_fail(struct cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cur_fail(struct cur *c, const char *fmt, ...)
{
    char what[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->err->msg, sizeof c->err->msg, "%s at column %zu", what, c->i + 1);
    return -1;
}

static int oom(struct fmt_err *err)
{
    snprintf(err->msg, sizeof err->msg, "out of memory");
    return -1;
}

static int at_end(const struct cur *c) { return c->i >= c->n; }

/* JSON's whitespace; quoted and hex use the same set (a CRLF file's '\r'
 * is whitespace there too). */
static void skip_ws(struct cur *c)
{
    while (c->i < c->n &&
           (c->p[c->i] == ' ' || c->p[c->i] == '\t' || c->p[c->i] == '\r' || c->p[c->i] == '\n'))
        c->i++;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A printable form of the byte at the cursor, for messages. */
static const char *show(const struct cur *c, char buf[8])
{
    if (at_end(c))
        return "end of line";
    unsigned char b = c->p[c->i];
    if (b > 0x20 && b < 0x7f && b != '\'')
        snprintf(buf, 8, "'%c'", b);
    else
        snprintf(buf, 8, "\\x%02x", b);
    return buf;
}

static int dec_quoted_part(struct cur *c, struct fmt_msg *m)
{
    c->i++; /* the opening quote */
    for (;;) {
        if (at_end(c))
            return cur_fail(c, "unterminated quoted part");
        unsigned char b = c->p[c->i];
        if (b == '"')
            break;
        if (b != '\\') {
            if (buf_byte(&m->bytes, b))
                return oom(c->err);
            c->i++;
            continue;
        }
        c->i++;
        char sb[8];
        unsigned char e = at_end(c) ? 0 : c->p[c->i];
        int v = -1, hi, lo;
        if (e == '\\' || e == '"')
            v = e;
        else if (e == 'n' || e == 't' || e == 'r' || e == '0')
            v = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : 0;
        else if (e == 'x' && c->n - c->i >= 3 && (hi = hex_value(c->p[c->i + 1])) >= 0 &&
                 (lo = hex_value(c->p[c->i + 2])) >= 0) {
            v = hi << 4 | lo;
            c->i += 2;
        } else if (e == 'x')
            return cur_fail(c, "\\x needs two hex digits");
        else
            return cur_fail(c, "bad escape \\ before %s (use \\\\ \\\" \\n \\t \\r \\0 or \\xNN)",
                            show(c, sb));
        if (buf_byte(&m->bytes, (unsigned char)v))
            return oom(c->err);
        c->i++;
    }
    c->i++; /* the closing quote */
    return msg_close_part(m) ? oom(c->err) : 0;
}

static int dec_quoted(struct cur *c, struct fmt_msg *m)
{
    skip_ws(c);
    while (!at_end(c)) {
        char sb[8];
        if (c->p[c->i] != '"')
            return cur_fail(c, "expected '\"' to start a part, found %s", show(c, sb));
        if (dec_quoted_part(c, m) != 0)
            return -1;
        size_t before = c->i;
        skip_ws(c);
        if (!at_end(c) && c->i == before)
            return cur_fail(c, "expected a space between parts, found %s", show(c, sb));
    }
    if (m->nparts == 0)
        return cur_fail(c, "no parts (an empty part is written \"\")");
    return 0;
}

static int dec_hex(struct cur *c, struct fmt_msg *m)
{
    for (;;) {
        skip_ws(c);
        while (!at_end(c) && c->p[c->i] != '|') {
            int hi = hex_value(c->p[c->i]), lo;
            char sb[8];
            if (hi < 0)
                return cur_fail(c, "bad hex digit %s", show(c, sb));
            c->i++;
            if (at_end(c) || (lo = hex_value(c->p[c->i])) < 0)
                return cur_fail(c, "odd number of hex digits in part %zu", m->nparts + 1);
            if (buf_byte(&m->bytes, (unsigned char)(hi << 4 | lo)))
                return oom(c->err);
            c->i++;
            skip_ws(c);
        }
        if (msg_close_part(m))
            return oom(c->err);
        if (at_end(c))
            return 0;
        c->i++; /* '|': another part follows */
    }
}

/* Four hex digits of a \u escape, the cursor on the 'u'. */
static long json_u4(struct cur *c)
{
    long v = 0;
    if (c->n - c->i < 5)
        return -1;
    for (size_t j = 1; j <= 4; j++) {
        int d = hex_value(c->p[c->i + j]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    c->i += 5;
    return v;
}

static int put_utf8(struct fmt_buf *b, unsigned long cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 63));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        u[2] = (unsigned char)(0x80 | (cp & 63));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        u[3] = (unsigned char)(0x80 | (cp & 63));
        n = 4;
    }
    return fmt_buf_add(b, u, n);
}

/* A \uXXXX escape (with its low surrogate when it is a high one), the
 * cursor on the 'u'. */
static int json_unicode(struct cur *c, struct fmt_buf *out)
{
    long hi = json_u4(c), lo;
    if (hi < 0)
        return cur_fail(c, "\\u needs four hex digits");
    if (hi >= 0xdc00 && hi <= 0xdfff)
        return cur_fail(c, "lone low surrogate \\u%04lx", hi);
    if (hi < 0xd800 || hi > 0xdbff)
        return put_utf8(out, (unsigned long)hi) ? oom(c->err) : 0;
    if (c->n - c->i < 2 || c->p[c->i] != '\\' || c->p[c->i + 1] != 'u')
        return cur_fail(c, "high surrogate \\u%04lx without its low half", hi);
    c->i++;
    if ((lo = json_u4(c)) < 0)
        return cur_fail(c, "\\u needs four hex digits");
    if (lo < 0xdc00 || lo > 0xdfff)
        return cur_fail(c, "high surrogate \\u%04lx followed by \\u%04lx", hi, lo);
    unsigned long cp =
        0x10000 + (((unsigned long)hi - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
    return put_utf8(out, cp) ? oom(c->err) : 0;
}

/* A JSON string (RFC 8259), the cursor on its opening quote; its bytes
 * are appended to out. */
static int json_string(struct cur *c, struct fmt_buf *out)
{
    c->i++;
    for (;;) {
        if (at_end(c))
            return cur_fail(c, "unterminated string");
        unsigned char b = c->p[c->i];
        char sb[8];
        if (b == '"')
            break;
        if (b < 0x20)
            return cur_fail(c, "control character %s in a string (escape it)", show(c, sb));
        if (b != '\\') {
            size_t l = fmt_utf8_seq(c->p + c->i, c->n - c->i);
            if (l == 0)
                return cur_fail(c, "invalid UTF-8 in a string (use {\"base64\": ...})");
            if (fmt_buf_add(out, c->p + c->i, l))
                return oom(c->err);
            c->i += l;
            continue;
        }
        c->i++;
        const char *e = at_end(c) || !c->p[c->i] ? NULL : strchr("\"\\/bfnrtu", c->p[c->i]);
        if (e == NULL)
            return cur_fail(c, "bad escape \\ before %s in a string", show(c, sb));
        if (*e == 'u') {
            if (json_unicode(c, out) != 0)
                return -1;
            continue;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        if (buf_byte(out, (unsigned char)to[strchr(from, *e) - from]))
            return oom(c->err);
        c->i++;
    }
    c->i++;
    return 0;
}

static int expect_char(struct cur *c, unsigned char want, const char *what)
{
    char sb[8];
    skip_ws(c);
    if (at_end(c) || c->p[c->i] != want)
        return cur_fail(c, "expected %s, found %s", what, show(c, sb));
    c->i++;
    skip_ws(c);
    return 0;
}

/* `{ "KEY" :` with exactly this key (the only member of its object). */
static int json_key(struct cur *c, const char *key)
{
    if (expect_char(c, '{', "'{'") != 0)
        return -1;
    char sb[8];
    if (at_end(c) || c->p[c->i] != '"')
        return cur_fail(c, "expected the key \"%s\", found %s", key, show(c, sb));
    size_t at = c->i;
    struct fmt_buf k = {0};
    int rc = json_string(c, &k);
    if (rc == 0 && (k.len != strlen(key) || memcmp(k.data, key, k.len) != 0)) {
        c->i = at;
        rc = cur_fail(c, "expected the key \"%s\" (the only one)", key);
    }
    fmt_buf_free(&k);
    return rc ? -1 : expect_char(c, ':', "':'");
}

static int json_part(struct cur *c, struct fmt_msg *m)
{
    char sb[8];
    if (!at_end(c) && c->p[c->i] == '"') {
        if (json_string(c, &m->bytes) != 0)
            return -1;
    } else if (!at_end(c) && c->p[c->i] == '{') {
        if (json_key(c, "base64") != 0)
            return -1;
        if (at_end(c) || c->p[c->i] != '"')
            return cur_fail(c, "expected a base64 string, found %s", show(c, sb));
        struct fmt_buf t = {0};
        size_t at = c->i + 1;
        int rc = json_string(c, &t);
        const char *why = rc == 0 ? b64_decode(t.data, t.len, &m->bytes) : NULL;
        fmt_buf_free(&t);
        if (rc != 0)
            return -1;
        if (why) {
            c->i = at;
            return cur_fail(c, "%s", why);
        }
        if (expect_char(c, '}', "'}'") != 0)
            return -1;
    } else
        return cur_fail(c, "expected a string or {\"base64\": ...}, found %s", show(c, sb));
    return msg_close_part(m) ? oom(c->err) : 0;
}

static int dec_json(struct cur *c, struct fmt_msg *m)
{
    if (json_key(c, "parts") != 0 || expect_char(c, '[', "'['") != 0)
        return -1;
    if (!at_end(c) && c->p[c->i] == ']')
        return cur_fail(c, "a message needs at least one part");
    for (;;) {
        if (json_part(c, m) != 0)
            return -1;
        skip_ws(c);
        if (!at_end(c) && c->p[c->i] == ',') {
            c->i++;
            skip_ws(c);
            continue;
        }
        if (expect_char(c, ']', "',' or ']'") != 0 || expect_char(c, '}', "'}'") != 0)
            return -1;
        char sb[8];
        if (!at_end(c))
            return cur_fail(c, "unexpected %s after the message", show(c, sb));
        return 0;
    }
}

int fmt_decode(enum fmt_kind k, const unsigned char *line, size_t len, struct fmt_msg *m,
               struct fmt_err *err)
{
    struct cur c = {line, len, 0, err};
    fmt_msg_reset(m);
    err->msg[0] = 0;
    switch (k) {
    case FMT_TEXT:
    case FMT_RAW:
        return fmt_msg_add_part(m, line, len) ? oom(err) : 0;
    case FMT_QUOTED:
        return dec_quoted(&c, m);
    case FMT_JSON:
        return dec_json(&c, m);
    case FMT_HEX:
        return dec_hex(&c, m);
    }
    return -1;
}
