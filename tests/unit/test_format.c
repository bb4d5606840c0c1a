/*
 * test_format.c - the CLI's message formats (tools/ferry/format.c): every
 * byte value through every format, empty parts and messages, the zero-part
 * edge, the UTF-8 rules (overlongs, surrogates, beyond U+10FFFF, cut-short
 * sequences), decoder errors, and random multipart messages through every
 * reversible format and back, byte for byte.
 */
#include "../common.h"

#include "format.h"

/* --- helpers ------------------------------------------------------------------ */

static struct fmt_msg msg_of(size_t nparts, const char *const *parts, const size_t *lens)
{
    struct fmt_msg m = {0};
    for (size_t i = 0; i < nparts; i++)
        assert_int_equal(fmt_msg_add_part(&m, parts[i], lens ? lens[i] : strlen(parts[i])), 0);
    return m;
}

/* The encoding of m as a NUL-terminated string (tests keep NUL out of it). */
static char *encode(enum fmt_kind k, const struct fmt_msg *m)
{
    struct fmt_buf b = {0};
    assert_int_equal(fmt_encode(k, m, &b), 0);
    assert_int_equal(fmt_buf_add(&b, "", 1), 0);
    assert_int_equal(strlen((char *)b.data), b.len - 1);
    return (char *)b.data;
}

static char *encode1(enum fmt_kind k, const void *p, size_t n)
{
    struct fmt_msg m = {0};
    assert_int_equal(fmt_msg_add_part(&m, p, n), 0);
    char *s = encode(k, &m);
    fmt_msg_free(&m);
    return s;
}

static void assert_same(const struct fmt_msg *a, const struct fmt_msg *b)
{
    assert_int_equal(a->nparts, b->nparts);
    for (size_t i = 0; i < a->nparts; i++) {
        size_t na, nb;
        const unsigned char *pa = fmt_msg_part(a, i, &na), *pb = fmt_msg_part(b, i, &nb);
        assert_int_equal(na, nb);
        if (na)
            assert_memory_equal(pa, pb, na);
    }
}

/* Decodes a line (given without its '\n'); returns 0 or -1, the reason in err. */
static int decode(enum fmt_kind k, const char *line, struct fmt_msg *m, struct fmt_err *err)
{
    return fmt_decode(k, (const unsigned char *)line, strlen(line), m, err);
}

static void assert_decode_fails(enum fmt_kind k, const char *line, const char *why)
{
    struct fmt_msg m = {0};
    struct fmt_err err;
    assert_int_equal(decode(k, line, &m, &err), -1);
    if (strstr(err.msg, why) == NULL)
        fail_msg("decoding %s '%s': reason '%s' lacks '%s'", fmt_name(k), line, err.msg, why);
    fmt_msg_free(&m);
}

/* Encodes m in k, checks it is one line, decodes it back and compares. */
static void assert_round_trip(enum fmt_kind k, const struct fmt_msg *m)
{
    struct fmt_buf b = {0};
    struct fmt_msg back = {0};
    struct fmt_err err;
    assert_int_equal(fmt_encode(k, m, &b), 0);
    assert_true(b.len >= 1 && b.data[b.len - 1] == '\n');
    assert_null(memchr(b.data, '\n', b.len - 1)); /* one message, one line */
    if (fmt_decode(k, b.data, b.len - 1, &back, &err) != 0)
        fail_msg("%s: %.*s: %s", fmt_name(k), (int)b.len - 1, b.data, err.msg);
    assert_same(m, &back);
    fmt_buf_free(&b);
    fmt_msg_free(&back);
}

/* --- UTF-8 ----------------------------------------------------------------------- */

static void test_utf8_rules(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len; /* of the first sequence, 0: invalid */
    } cases[] = {
        {"\x7f", 1},
        {"\xc2\x80", 2},
        {"\xdf\xbf", 2},
        {"\xe0\xa0\x80", 3},
        {"\xed\x9f\xbf", 3},
        {"\xee\x80\x80", 3},
        {"\xef\xbf\xbf", 3},
        {"\xf0\x90\x80\x80", 4},
        {"\xf4\x8f\xbf\xbf", 4},
        /* overlong forms of '/', U+07FF, U+FFFF */
        {"\xc0\xaf", 0},
        {"\xc1\xbf", 0},
        {"\xe0\x80\xaf", 0},
        {"\xe0\x9f\xbf", 0},
        {"\xf0\x80\x80\xaf", 0},
        {"\xf0\x8f\xbf\xbf", 0},
        /* surrogates U+D800, U+DFFF */
        {"\xed\xa0\x80", 0},
        {"\xed\xbf\xbf", 0},
        /* beyond U+10FFFF */
        {"\xf4\x90\x80\x80", 0},
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"\xfe", 0},
        /* stray continuation bytes, sequences cut short or broken */
        {"\x80", 0},
        {"\xbf", 0},
        {"\xc3", 0},
        {"\xe4\xb8", 0},
        {"\xf0\x9f\x98", 0},
        {"\xc3\x28", 0},
        {"\xe4\xb8\x28", 0},
        {"\xf0\x9f\x98\x28", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const unsigned char *p = (const unsigned char *)cases[i].bytes;
        size_t got = fmt_utf8_seq(p, strlen(cases[i].bytes));
        if (got != cases[i].len)
            fail_msg("case %zu: length %zu, wanted %zu", i, got, cases[i].len);
    }
    assert_true(fmt_utf8_valid((const unsigned char *)"h\xc3\xa9llo \xe4\xb8\x96", 10));
    assert_false(fmt_utf8_valid((const unsigned char *)"ok\xc3", 3));
    assert_true(fmt_utf8_valid((const unsigned char *)"", 0));
}

/* --- text ------------------------------------------------------------------------ */

static void test_text_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c;
        char *s = encode1(FMT_TEXT, &b, 1);
        char want[8];
        /* alone, a byte >= 0x80 is never valid UTF-8 */
        if (c == '\t' || (c >= 0x20 && c < 0x7f))
            snprintf(want, sizeof want, "%c\n", c);
        else
            snprintf(want, sizeof want, "\\x%02x\n", c);
        if (strcmp(s, want) != 0)
            fail_msg("byte 0x%02x: '%s', wanted '%s'", c, s, want);
        free(s);
    }
}

static void test_text_keeps_text(void **state)
{
    (void)state;
    static const char *const keep[] = {"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c",
                                       "{\"a\":\"b\\\"c\"}",
                                       "col1\tcol2\tcol3",
                                       "C:\\path\\x41",
                                       "\xf0\x9f\x98\x80 U+10FFFF: \xf4\x8f\xbf\xbf",
                                       ""};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *s = encode1(FMT_TEXT, keep[i], strlen(keep[i]));
        assert_int_equal(strlen(s), strlen(keep[i]) + 1);
        assert_memory_equal(s, keep[i], strlen(keep[i]));
        free(s);
    }
    static const struct {
        const char *in, *out;
    } esc[] = {
        {"a\nb\rc", "a\\x0ab\\x0dc\n"},
        {"\x1b[31mred", "\\x1b[31mred\n"},
        {"del\x7f", "del\\x7f\n"},
        {"cut \xe4\xb8", "cut \\xe4\\xb8\n"},
        {"overlong \xc0\xaf", "overlong \\xc0\\xaf\n"},
        {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80\n"},
        {"big \xf4\x90\x80\x80", "big \\xf4\\x90\\x80\\x80\n"},
        {"\xe4\xb8\x96\x80\xe7\x95\x8c", "\xe4\xb8\x96\\x80\xe7\x95\x8c\n"},
        /* C1 controls are valid UTF-8, but terminals obey CSI (U+009B) and
         * NEL (U+0085) as they obey ESC; U+00A0 and up is text */
        {"\xc2\x9b"
         "2J \xc2\x85 \xc2\xa0\xc2\xa9",
         "\\xc2\\x9b"
         "2J \\xc2\\x85 \xc2\xa0\xc2\xa9\n"},
    };
    for (size_t i = 0; i < sizeof esc / sizeof esc[0]; i++) {
        char *s = encode1(FMT_TEXT, esc[i].in, strlen(esc[i].in));
        assert_string_equal(s, esc[i].out);
        free(s);
    }
}

static void test_text_parts_and_input(void **state)
{
    (void)state;
    static const char *const parts[] = {"a", "", "c d"};
    struct fmt_msg m = msg_of(3, parts, NULL), back = {0};
    char *s = encode(FMT_TEXT, &m);
    assert_string_equal(s, "a\t\tc d\n");
    free(s);
    /* as input, a line is one part, bytes as they are (backslashes too) */
    struct fmt_err err;
    assert_int_equal(decode(FMT_TEXT, "a\\x41\tb", &back, &err), 0);
    assert_int_equal(back.nparts, 1);
    size_t n;
    assert_memory_equal(fmt_msg_part(&back, 0, &n), "a\\x41\tb", 7);
    assert_int_equal(n, 7);
    fmt_msg_free(&m);
    fmt_msg_free(&back);
}

/* --- quoted ---------------------------------------------------------------------- */

static void test_quoted_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c;
        char *s = encode1(FMT_QUOTED, &b, 1);
        char want[12];
        if (c == '\\' || c == '"')
            snprintf(want, sizeof want, "\"\\%c\"\n", c);
        else if (c == '\n' || c == '\t')
            snprintf(want, sizeof want, "\"\\%c\"\n", c == '\n' ? 'n' : 't');
        else if (c >= 0x20 && c < 0x7f)
            snprintf(want, sizeof want, "\"%c\"\n", c);
        else
            snprintf(want, sizeof want, "\"\\x%02x\"\n", c);
        if (strcmp(s, want) != 0)
            fail_msg("byte 0x%02x: '%s', wanted '%s'", c, s, want);
        free(s);
        struct fmt_msg m = {0};
        assert_int_equal(fmt_msg_add_part(&m, &b, 1), 0);
        assert_round_trip(FMT_QUOTED, &m);
        fmt_msg_free(&m);
    }
}

static void test_quoted_parts_and_input(void **state)
{
    (void)state;
    static const char *const parts[] = {"say \"hi\"", "", "a|b"};
    struct fmt_msg m = msg_of(3, parts, NULL), back = {0};
    char *s = encode(FMT_QUOTED, &m);
    assert_string_equal(s, "\"say \\\"hi\\\"\" \"\" \"a|b\"\n");
    free(s);
    assert_round_trip(FMT_QUOTED, &m);
    /* hand-written input: spaces around, raw UTF-8, \r \0 and upper-case hex */
    struct fmt_err err;
    assert_int_equal(decode(FMT_QUOTED, "  \"h\xc3\xa9\\r\\0\\xFF\"\t\"\"  \r", &back, &err), 0);
    assert_int_equal(back.nparts, 2);
    size_t n;
    assert_memory_equal(fmt_msg_part(&back, 0, &n), "h\xc3\xa9\r\0\xff", 6);
    assert_int_equal(n, 6);
    fmt_msg_part(&back, 1, &n);
    assert_int_equal(n, 0);
    fmt_msg_free(&m);
    fmt_msg_free(&back);
}

static void test_quoted_errors(void **state)
{
    (void)state;
    assert_decode_fails(FMT_QUOTED, "", "no parts");
    assert_decode_fails(FMT_QUOTED, "   ", "no parts");
    assert_decode_fails(FMT_QUOTED, "abc", "expected '\"' to start a part, found 'a' at column 1");
    assert_decode_fails(FMT_QUOTED, "\"abc", "unterminated quoted part at column 5");
    assert_decode_fails(FMT_QUOTED, "\"a\"\"b\"", "expected a space between parts");
    assert_decode_fails(FMT_QUOTED, "\"a\\q\"", "bad escape \\ before 'q' (use");
    assert_decode_fails(FMT_QUOTED, "\"a\\q\"", "at column 4");
    assert_decode_fails(FMT_QUOTED, "\"a\\", "bad escape \\ before end of line");
    assert_decode_fails(FMT_QUOTED, "\"\\x4\"", "\\x needs two hex digits");
    assert_decode_fails(FMT_QUOTED, "\"\\xg0\"", "\\x needs two hex digits");
    assert_decode_fails(FMT_QUOTED, "\"a\" b", "found 'b' at column 5");
}

/* --- json ------------------------------------------------------------------------ */

static void test_json_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c;
        char *s = encode1(FMT_JSON, &b, 1);
        char want[48];
        const char *shortesc = c ? strchr("\b\f\n\r\t", c) : NULL;
        if (c == '"' || c == '\\')
            snprintf(want, sizeof want, "{\"parts\": [\"\\%c\"]}\n", c);
        else if (shortesc)
            snprintf(want, sizeof want, "{\"parts\": [\"\\%c\"]}\n",
                     "bfnrt"[shortesc - "\b\f\n\r\t"]);
        else if (c < 0x20 || c == 0x7f)
            snprintf(want, sizeof want, "{\"parts\": [\"\\u%04x\"]}\n", c);
        else if (c < 0x80)
            snprintf(want, sizeof want, "{\"parts\": [\"%c\"]}\n", c);
        else /* one byte >= 0x80 is not UTF-8: base64 of it */
            snprintf(want, sizeof want, "{\"parts\": [{\"base64\": \"%c%c==\"}]}\n",
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[c >> 2],
                     "AQgw"[c & 3]);
        if (strcmp(s, want) != 0)
            fail_msg("byte 0x%02x: '%s', wanted '%s'", c, s, want);
        free(s);
        struct fmt_msg m = {0};
        assert_int_equal(fmt_msg_add_part(&m, &b, 1), 0);
        assert_round_trip(FMT_JSON, &m);
        fmt_msg_free(&m);
    }
}

static void test_json_strings_and_base64(void **state)
{
    (void)state;
    static const char *const parts[] = {"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c",
                                        "{\"a\":\"b\\\"c\"}", "", "\xff\xfe\x00", "a\xed\xa0\x80"};
    static const size_t lens[] = {13, 12, 0, 3, 4};
    struct fmt_msg m = msg_of(5, parts, lens);
    char *s = encode(FMT_JSON, &m);
    assert_string_equal(s, "{\"parts\": [\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c\", "
                           "\"{\\\"a\\\":\\\"b\\\\\\\"c\\\"}\", \"\", {\"base64\": \"//4A\"}, "
                           "{\"base64\": \"Ye2ggA==\"}]}\n");
    free(s);
    assert_round_trip(FMT_JSON, &m);
    fmt_msg_free(&m);
    /* C1 controls: \u escapes (legal raw JSON, but not on a terminal), and back */
    static const char *const c1[] = {"\xc2\x9b"
                                     "2J\xc2\xa0"};
    static const size_t c1len[] = {6};
    m = msg_of(1, c1, c1len);
    s = encode(FMT_JSON, &m);
    assert_string_equal(s, "{\"parts\": [\"\\u009b2J\xc2\xa0\"]}\n");
    free(s);
    assert_round_trip(FMT_JSON, &m);
    fmt_msg_free(&m);
}

static void test_json_input(void **state)
{
    (void)state;
    struct fmt_msg m = {0};
    struct fmt_err err;
    /* whitespace as jq writes it, every escape, a surrogate pair, base64 */
    assert_int_equal(
        decode(FMT_JSON,
               " {\r\n \"parts\" : [ \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000\" ,"
               " {\"base64\":\"aGk=\"}, {\"base64\": \"\"} ] } ",
               &m, &err),
        0);
    assert_int_equal(m.nparts, 3);
    size_t n;
    const unsigned char *p = fmt_msg_part(&m, 0, &n);
    assert_int_equal(n, 15);
    assert_memory_equal(p, "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\0", 15);
    assert_memory_equal(fmt_msg_part(&m, 1, &n), "hi", 2);
    assert_int_equal(n, 2);
    fmt_msg_part(&m, 2, &n);
    assert_int_equal(n, 0);
    /* the key may be escaped too */
    assert_int_equal(decode(FMT_JSON, "{\"\\u0070arts\": [\"x\"]}", &m, &err), 0);
    fmt_msg_free(&m);
}

static void test_json_errors(void **state)
{
    (void)state;
    assert_decode_fails(FMT_JSON, "", "expected '{', found end of line at column 1");
    assert_decode_fails(FMT_JSON, "[\"x\"]", "expected '{', found '[' at column 1");
    assert_decode_fails(FMT_JSON, "{\"part\": [\"x\"]}", "expected the key \"parts\"");
    assert_decode_fails(FMT_JSON, "{\"parts\": []}", "at least one part");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a\" \"b\"]}",
                        "expected ',' or ']', found '\"' at column 16");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a\"]", "expected '}', found end of line");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a\"]} x", "unexpected 'x' after the message");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a\"], \"x\": 1}", "expected '}', found ','");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a]}", "unterminated string");
    assert_decode_fails(FMT_JSON, "{\"parts\": [1]}", "expected a string or {\"base64\"");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\\q\"]}", "bad escape \\ before 'q'");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\\u12\"]}", "\\u needs four hex digits");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\\udc00\"]}", "lone low surrogate");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\\ud800\"]}", "without its low half");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\\ud800\\u0041\"]}", "followed by \\u0041");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"a\tb\"]}", "control character \\x09");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\xff\"]}", "invalid UTF-8");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\xc0\xaf\"]}", "invalid UTF-8");
    assert_decode_fails(FMT_JSON, "{\"parts\": [\"\xed\xa0\x80\"]}", "invalid UTF-8");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"base64\": \"abc\"}]}", "not a multiple of 4");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"base64\": \"ab!=\"}]}",
                        "invalid base64 character");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"base64\": \"a=bc\"}]}", "misplaced '='");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"base64\": \"====\"}]}", "misplaced '='");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"b64\": \"\"}]}", "expected the key \"base64\"");
    assert_decode_fails(FMT_JSON, "{\"parts\": [{\"base64\": 1}]}", "expected a base64 string");
}

/* --- hex ------------------------------------------------------------------------- */

static void test_hex_every_byte(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int c = 0; c < 256; c++)
        all[c] = (unsigned char)c;
    char *s = encode1(FMT_HEX, all, sizeof all);
    assert_int_equal(strlen(s), 2 * 256 + 1);
    for (int c = 0; c < 256; c++) {
        char want[3];
        snprintf(want, sizeof want, "%02x", c);
        assert_memory_equal(s + 2 * c, want, 2);
    }
    free(s);
    struct fmt_msg m = {0};
    assert_int_equal(fmt_msg_add_part(&m, all, sizeof all), 0);
    assert_round_trip(FMT_HEX, &m);
    fmt_msg_free(&m);
}

static void test_hex_parts_and_input(void **state)
{
    (void)state;
    static const char *const parts[] = {"ab", "", "\xff"};
    struct fmt_msg m = msg_of(3, parts, NULL), back = {0};
    char *s = encode(FMT_HEX, &m);
    assert_string_equal(s, "6162 |  | ff\n");
    free(s);
    assert_round_trip(FMT_HEX, &m);
    struct fmt_err err;
    assert_int_equal(decode(FMT_HEX, " 61 62|FF ", &back, &err), 0);
    assert_int_equal(back.nparts, 2);
    size_t n;
    assert_memory_equal(fmt_msg_part(&back, 1, &n), "\xff", 1);
    assert_int_equal(decode(FMT_HEX, "|", &back, &err), 0);
    assert_int_equal(back.nparts, 2);
    assert_decode_fails(FMT_HEX, "616", "odd number of hex digits in part 1");
    assert_decode_fails(FMT_HEX, "61 | 6 2", "odd number of hex digits in part 2");
    assert_decode_fails(FMT_HEX, "61zz", "bad hex digit 'z' at column 3");
    assert_decode_fails(FMT_HEX, "0x61", "odd number of hex digits");
    fmt_msg_free(&m);
    fmt_msg_free(&back);
}

/* --- empty parts, empty messages, zero parts, raw ---------------------------------- */

static void test_empty_and_zero_parts(void **state)
{
    (void)state;
    static const struct {
        enum fmt_kind k;
        const char *none, *one_empty, *two_empty;
    } want[] = {
        {FMT_TEXT, "\n", "\n", "\t\n"},
        {FMT_QUOTED, "\n", "\"\"\n", "\"\" \"\"\n"},
        {FMT_JSON, "{\"parts\": []}\n", "{\"parts\": [\"\"]}\n", "{\"parts\": [\"\", \"\"]}\n"},
        {FMT_HEX, "\n", "\n", " | \n"},
        {FMT_RAW, "", "", ""},
    };
    static const char *const empties[] = {"", ""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct fmt_msg none = {0}, one = msg_of(1, empties, NULL), two = msg_of(2, empties, NULL);
        char *a = encode(want[i].k, &none), *b = encode(want[i].k, &one),
             *c = encode(want[i].k, &two);
        assert_string_equal(a, want[i].none);
        assert_string_equal(b, want[i].one_empty);
        assert_string_equal(c, want[i].two_empty);
        free(a);
        free(b);
        free(c);
        if (want[i].k == FMT_QUOTED || want[i].k == FMT_JSON || want[i].k == FMT_HEX) {
            assert_round_trip(want[i].k, &one);
            assert_round_trip(want[i].k, &two);
        }
        fmt_msg_free(&one);
        fmt_msg_free(&two);
    }
    /* no decoder makes a message of zero parts: ferry has none to send */
    assert_decode_fails(FMT_QUOTED, "", "no parts");
    assert_decode_fails(FMT_JSON, "{\"parts\": []}", "at least one part");
    struct fmt_msg m = {0};
    struct fmt_err err;
    for (enum fmt_kind k = FMT_TEXT; k <= FMT_RAW; k++) {
        if (k == FMT_QUOTED || k == FMT_JSON)
            continue;
        assert_int_equal(decode(k, "", &m, &err), 0);
        assert_int_equal(m.nparts, 1);
    }
    fmt_msg_free(&m);
}

static void test_names(void **state)
{
    (void)state;
    static const char *const n[] = {"text", "quoted", "json", "hex", "raw"};
    for (size_t i = 0; i < 5; i++) {
        enum fmt_kind k;
        assert_int_equal(fmt_parse_name(n[i], &k), 0);
        assert_string_equal(fmt_name(k), n[i]);
    }
    enum fmt_kind k;
    assert_int_equal(fmt_parse_name("JSON", &k), -1);
    assert_int_equal(fmt_parse_name("", &k), -1);
}

/* --- the round-trip property ------------------------------------------------------- */

/* Random bytes, biased towards what formats treat specially: quotes,
 * backslashes, separators, newlines, UTF-8 and its broken forms. */
static unsigned char random_byte(unsigned *seed)
{
    static const unsigned char special[] = {'"',  '\\', '|',  ' ',  '\t', '\n', '\r', 0,
                                            0x7f, 0xc3, 0xa9, 0xe4, 0xb8, 0xf0, 0x9f, 0xed,
                                            0xa0, 0xc0, 0x80, 0xff, '{',  '}',  '[',  ','};
    unsigned r = (unsigned)rand_r(seed);
    if (r % 3 == 0)
        return special[(r >> 8) % sizeof special];
    return (unsigned char)(r >> 8);
}

static void random_msg(unsigned *seed, struct fmt_msg *m)
{
    fmt_msg_reset(m);
    size_t nparts = 1 + (size_t)rand_r(seed) % 6;
    for (size_t i = 0; i < nparts; i++) {
        unsigned char p[96];
        size_t n = (size_t)rand_r(seed) % (rand_r(seed) % 4 == 0 ? 1 : sizeof p);
        /* some parts are valid UTF-8 text, so json takes its string path */
        int text = rand_r(seed) % 2;
        for (size_t j = 0; j < n; j++)
            p[j] = text ? (unsigned char)(0x20 + rand_r(seed) % 0x5f) : random_byte(seed);
        if (text && n >= 3) /* and some non-ASCII in it: "é" */
            memcpy(p + n / 2 - 1, "\xc3\xa9", 2);
        assert_int_equal(fmt_msg_add_part(m, p, n), 0);
    }
}

static void test_round_trip_property(void **state)
{
    (void)state;
    const char *env = getenv("FERRY_TEST_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    print_message("round trips: seed %u (FERRY_TEST_SEED=%u repeats it)\n", seed, seed);
    struct fmt_msg m = {0}, back = {0};
    size_t strings = 0;
    for (int iter = 0; iter < 20000; iter++) {
        random_msg(&seed, &m);
        assert_round_trip(FMT_QUOTED, &m);
        assert_round_trip(FMT_JSON, &m);
        assert_round_trip(FMT_HEX, &m);
        for (size_t i = 0; i < m.nparts; i++) {
            size_t n;
            strings += fmt_utf8_valid(fmt_msg_part(&m, i, &n), n);
        }
        /* raw has no framing: exact for one message of one part, which is
         * how send reads it (all of stdin, one part) */
        size_t n;
        const unsigned char *p = fmt_msg_part(&m, 0, &n);
        struct fmt_buf b = {0};
        struct fmt_err err;
        assert_int_equal(fmt_enc_part(FMT_RAW, 0, p, n, &b), 0);
        assert_int_equal(fmt_enc_end(FMT_RAW, 1, &b), 0);
        assert_int_equal(b.len, n);
        assert_int_equal(fmt_decode(FMT_RAW, b.data, b.len, &back, &err), 0);
        assert_int_equal(back.nparts, 1);
        assert_int_equal(n, b.len);
        if (n)
            assert_memory_equal(fmt_msg_part(&back, 0, &n), b.data, n);
        fmt_buf_free(&b);
    }
    assert_true(strings > 1000); /* both json paths were exercised */
    fmt_msg_free(&m);
    fmt_msg_free(&back);
}

/* Hostile input: random lines, biased towards each format's syntax, into
 * every decoder (under ASan in `make test`): each either decodes, and what
 * it decoded survives a round trip, or fails with a reason. */
static void test_decoders_on_garbage(void **state)
{
    (void)state;
    static const char *const pieces[] = {"{\"parts\": [",
                                         "]}",
                                         "\"",
                                         "\\",
                                         "\\u",
                                         "\\ud83d",
                                         "\\udc00",
                                         "{\"base64\": \"",
                                         "QQ==",
                                         "=",
                                         ",",
                                         " ",
                                         "|",
                                         "ff",
                                         "0",
                                         "\\x",
                                         "\\x4",
                                         "\xc3",
                                         "\xa9",
                                         "\xed\xa0\x80",
                                         "\xf4\x90",
                                         "\t",
                                         "\r",
                                         "a",
                                         "\"\"",
                                         "}",
                                         "[",
                                         "\\n"};
    unsigned seed = 12345;
    struct fmt_msg m = {0};
    struct fmt_err err;
    for (int iter = 0; iter < 50000; iter++) {
        unsigned char line[256];
        size_t n = 0, want = (size_t)rand_r(&seed) % 40;
        for (size_t j = 0; j < want; j++) {
            const char *p = pieces[(size_t)rand_r(&seed) % (sizeof pieces / sizeof pieces[0])];
            size_t l = strlen(p);
            if (n + l > sizeof line)
                break;
            memcpy(line + n, p, l);
            n += l;
        }
        if (rand_r(&seed) % 4 == 0 && n > 0)
            n = (size_t)rand_r(&seed) % n; /* cut anywhere */
        for (enum fmt_kind k = FMT_QUOTED; k <= FMT_HEX; k++) {
            if (fmt_decode(k, line, n, &m, &err) == 0) {
                assert_true(m.nparts >= 1);
                assert_round_trip(k, &m);
            } else
                assert_true(strstr(err.msg, " at column ") != NULL);
        }
    }
    fmt_msg_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_rules),
        cmocka_unit_test(test_text_every_byte),
        cmocka_unit_test(test_text_keeps_text),
        cmocka_unit_test(test_text_parts_and_input),
        cmocka_unit_test(test_quoted_every_byte),
        cmocka_unit_test(test_quoted_parts_and_input),
        cmocka_unit_test(test_quoted_errors),
        cmocka_unit_test(test_json_every_byte),
        cmocka_unit_test(test_json_strings_and_base64),
        cmocka_unit_test(test_json_input),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_hex_every_byte),
        cmocka_unit_test(test_hex_parts_and_input),
        cmocka_unit_test(test_empty_and_zero_parts),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_round_trip_property),
        cmocka_unit_test(test_decoders_on_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
