#!/usr/bin/env python3
"""formats_check.py - an independent reading of `ferry recv --format`
(docs/cli.md), for tests/cli/formats.sh.

  formats_check.py gen FILE        writes the test messages to FILE as JSON
                                   Lines, encoded here, not by ferry
  formats_check.py check FORMAT MSGS OUT
                                   OUT (what ferry printed) must be exactly
                                   the messages of MSGS in FORMAT
"""
import base64
import json
import re
import sys


def messages():
    every_byte = bytes(range(256))
    return [
        ["héllo 世界".encode()],                      # UTF-8
        ['{"a":"b\\"c","t":"x\ty"}'.encode()],         # JSON with escapes, tab
        [b"col1\tcol2\tcol3"],                         # TSV
        [b"C:\\dir\\x41 \\n"],                         # backslashes as they are
        [every_byte],                                  # all 256 values, one part
        [bytes([b]) for b in range(256)],              # all 256 values, one part each
        [b"a", b"", b"b c", b"|", b'"'],               # multipart, empty part
        [b""],                                         # one empty part
        [b"", b""],                                    # two empty parts
        [b"line\nbreak\r\n", b"\x1b[31mred\x7f"],      # what text must escape
        [b"bad \xff\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe4\xb8"],  # not UTF-8
        ["😀 U+10FFFF \U0010ffff".encode()],
    ]


def json_part(p):
    try:
        return p.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(p).decode()}


def json_unpart(x):
    if isinstance(x, str):
        return x.encode("utf-8")
    assert set(x) == {"base64"}, x
    return base64.b64decode(x["base64"], validate=True)


def utf8_len(b, i):
    """Length of the valid UTF-8 sequence at b[i], or 0 (Python's strict
    decoder refuses overlongs, surrogates and > U+10FFFF)."""
    for n in range(1, 5):
        try:
            if len(b[i:i + n].decode("utf-8")) == 1:
                return n
        except UnicodeDecodeError:
            pass
    return 0


def text_part(p):
    out, i = b"", 0
    while i < len(p):
        n = utf8_len(p, i)
        c = p[i]
        if n > 1 or (n == 1 and (c == 9 or 0x20 <= c < 0x7f)):
            out += p[i:i + n]
            i += n
        else:
            out += b"\\x%02x" % c
            i += 1
    return out


def unquote(line):
    parts = []
    for m in re.finditer(rb'"((?:[^"\\]|\\.)*)"( |$)', line):
        s, out, i = m.group(1), b"", 0
        while i < len(s):
            if s[i] != 0x5c:
                out += s[i:i + 1]
                i += 1
            elif s[i + 1:i + 2] == b"x":
                out += bytes([int(s[i + 2:i + 4], 16)])
                i += 4
            else:
                out += {b"n": b"\n", b"t": b"\t", b"\\": b"\\", b'"': b'"'}[s[i + 1:i + 2]]
                i += 2
        parts.append(out)
    # the parts found must cover the whole line: nothing skipped
    again = b" ".join(b'"' + quote(p) + b'"' for p in parts)
    assert again == line, (again, line)
    return parts


def quote(p):
    out = b""
    for c in p:
        if c in b'\\"':
            out += b"\\" + bytes([c])
        elif c == 10:
            out += b"\\n"
        elif c == 9:
            out += b"\\t"
        elif 0x20 <= c < 0x7f:
            out += bytes([c])
        else:
            out += b"\\x%02x" % c
    return out


def decode(fmt, line):
    if fmt == "json":
        obj = json.loads(line)  # strict: no raw control characters
        assert list(obj) == ["parts"], obj
        parts = [json_unpart(x) for x in obj["parts"]]
        for x, p in zip(obj["parts"], parts):  # a string exactly when UTF-8
            assert isinstance(x, str) == isinstance(json_part(p), str), (x, p)
        return parts
    if fmt == "hex":
        return [bytes.fromhex(h.decode()) for h in line.split(b" | ")]
    if fmt == "quoted":
        return unquote(line)
    raise SystemExit("unknown format " + fmt)


def main():
    if sys.argv[1] == "gen":
        with open(sys.argv[2], "w") as f:
            for m in messages():
                f.write(json.dumps({"parts": [json_part(p) for p in m]}) + "\n")
        return
    fmt, msgs_path, out_path = sys.argv[2:5]
    want = [[json_unpart(x) for x in json.loads(l)["parts"]] for l in open(msgs_path)]
    got = open(out_path, "rb").read()
    if fmt == "text":
        expect = b"".join(b"\t".join(text_part(p) for p in m) + b"\n" for m in want)
        assert got == expect, "text output differs:\n%r\n%r" % (got, expect)
        return
    assert got.endswith(b"\n"), got[-40:]
    lines = got[:-1].split(b"\n")
    assert len(lines) == len(want), (len(lines), len(want))
    for i, (line, m) in enumerate(zip(lines, want)):
        assert decode(fmt, line) == m, "message %d: %r is not %r" % (i + 1, line, m)


main()
