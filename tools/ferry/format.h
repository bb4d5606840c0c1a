/*
 * format.h - the message formats of `ferry recv --format` and `ferry send
 * --format`: every encoder and decoder lives in format.c, and nowhere else.
 *
 *   text    bytes as they are; only newline, CR, other ASCII controls (not
 *           tab), DEL and bytes that are not valid UTF-8 become \xNN; parts
 *           joined by one tab. For reading; not reversible. As input: one
 *           line is one single-part message, bytes as they are.
 *   quoted  each part in double quotes with C escapes (\\ \" \n \t \xNN),
 *           parts separated by a space. Exact.
 *   json    {"parts": [...]} per line; a part is a string when it is valid
 *           UTF-8, else {"base64": "..."}. Exact.
 *   hex     each part as lowercase hex digits, parts separated by " | ". Exact.
 *   raw     the bytes, nothing added. As input: all of it is one message of
 *           one part, so it is exact only for one single-part message.
 *
 * A line-based encoding ends with '\n'; a message has at least one part on
 * the wire, so a decoder never returns a message of zero parts (an encoder
 * given one writes what an empty list looks like; see fmt_encode()).
 */
#ifndef FERRY_CLI_FORMAT_H
#define FERRY_CLI_FORMAT_H

#include <stddef.h>

enum fmt_kind { FMT_TEXT, FMT_QUOTED, FMT_JSON, FMT_HEX, FMT_RAW };

/* A growing byte buffer. */
struct fmt_buf {
    unsigned char *data;
    size_t len, cap;
};

/* A message: the parts' bytes back to back in `bytes`, part i ending at
 * ends[i]. */
struct fmt_msg {
    struct fmt_buf bytes;
    size_t *ends;
    size_t nparts, partcap;
};

/* Room for a decoder's reason: "what is wrong, at which column". */
struct fmt_err {
    char msg[160];
};

/* "text", "quoted", ... -> its kind; -1 for an unknown name. */
int fmt_parse_name(const char *name, enum fmt_kind *out);
const char *fmt_name(enum fmt_kind k);

int fmt_buf_add(struct fmt_buf *b, const void *p, size_t n);
void fmt_buf_free(struct fmt_buf *b);

void fmt_msg_reset(struct fmt_msg *m);
void fmt_msg_free(struct fmt_msg *m);
/* Appends a whole part. 0, or -1 when out of memory. */
int fmt_msg_add_part(struct fmt_msg *m, const void *p, size_t n);
const unsigned char *fmt_msg_part(const struct fmt_msg *m, size_t i, size_t *len);

/* The length of the valid UTF-8 sequence at p (1-4), or 0 when the bytes
 * there are not one: a stray continuation byte, an overlong form, a
 * surrogate, a code point above U+10FFFF, or a sequence cut short. */
size_t fmt_utf8_seq(const unsigned char *p, size_t n);
int fmt_utf8_valid(const unsigned char *p, size_t n);

/* Streaming encoder for recv, which sees one part at a time:
 * fmt_enc_part() for part 0, 1, ..., then fmt_enc_end(). Each appends to
 * out; 0, or -1 when out of memory. */
int fmt_enc_part(enum fmt_kind k, size_t index, const unsigned char *p, size_t n,
                 struct fmt_buf *out);
int fmt_enc_end(enum fmt_kind k, size_t nparts, struct fmt_buf *out);
/* The whole message m, appended to out. */
int fmt_encode(enum fmt_kind k, const struct fmt_msg *m, struct fmt_buf *out);

/* Decodes one line (without its '\n') of a line-based format into m (reset
 * first). Returns 0; or -1 with the reason in err (malformed input, or out
 * of memory). For FMT_RAW the "line" is the whole input. */
int fmt_decode(enum fmt_kind k, const unsigned char *line, size_t len, struct fmt_msg *m,
               struct fmt_err *err);

#endif
