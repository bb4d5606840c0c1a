#!/usr/bin/env bash
# keygen.sh FERRY: `ferry keygen` as a user runs it: both keys on stdout;
# -o FILE writes the secret (mode 0600) and FILE.pub, never over a file;
# the keys are what pyzmq (libzmq) derives and decodes.
. "$(dirname "$0")/lib.sh"
ferry=$1
expect 0 "--help" -- "$ferry" keygen --help
contains out "usage: ferry keygen"
expect 2 "unknown option" -- "$ferry" keygen --frobnicate
one_line_error "unknown option"
expect 2 "stray argument" -- "$ferry" keygen extra
one_line_error "stray argument"

expect 0 "keygen prints a pair" -- "$ferry" keygen
pub=$(sed -n 's/^public: //p' "$T/out") sec=$(sed -n 's/^secret: //p' "$T/out")
[ ${#pub} -eq 40 ] && [ ${#sec} -eq 40 ] && [ "$(wc -l <"$T/out")" -eq 2 ] \
  && pass "two lines, two 40-character keys" || fail "keygen output: $(cat "$T/out")"

expect 0 "keygen -o" -- "$ferry" keygen -o "$T/server.key"
[ "$(stat -c %a "$T/server.key")" = 600 ] && pass "the secret key file is 0600" \
  || fail "mode $(stat -c %a "$T/server.key")"
[ "$(cat "$T/server.key.pub")" = "$(cat "$T/out")" ] && pass "FILE.pub holds the printed key" \
  || fail "FILE.pub differs from stdout"
expect 1 "never over an existing key" -- "$ferry" keygen -o "$T/server.key"
one_line_error "never over an existing key"
ln -s "$T/elsewhere" "$T/link.key"
expect 1 "never through a symlink" -- "$ferry" keygen -o "$T/link.key"
[ ! -e "$T/elsewhere" ] && pass "nothing written through the link" || fail "wrote through a link"

if /usr/bin/python3 -c 'import zmq' 2>/dev/null; then
  /usr/bin/python3 - "$pub" "$sec" "$T/server.key" <<'PY' && pass "libzmq derives the same public keys" \
    || fail "pyzmq disagrees"
import sys, zmq
from zmq.utils import z85
pub, sec, path = sys.argv[1], sys.argv[2], sys.argv[3]
assert zmq.curve_public(sec.encode()) == pub.encode()
assert len(z85.decode(pub)) == 32 and len(z85.decode(sec)) == 32
fsec = open(path).read().strip()
assert zmq.curve_public(fsec.encode()) == open(path + ".pub").read().strip().encode()
PY
else
  echo "pyzmq missing: the cross-check was skipped"
fi
finish
