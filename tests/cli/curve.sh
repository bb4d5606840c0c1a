#!/usr/bin/env bash
# curve.sh FERRY: CURVE from the command line as a user runs it: keys from
# `ferry keygen`, `ferry recv --curve-server` and `ferry send
# --curve-client` with UTF-8, JSON, binary and a large message; a key not
# allowed, a wrong server key, a secret key file open to others, usage
# errors; and a capture of the loopback (tshark) in which the message bodies
# never appear, while they do in a plain session of the same messages.
. "$(dirname "$0")/lib.sh"
ferry=$1
"$ferry" keygen -o "$T/server.key" >/dev/null
"$ferry" keygen -o "$T/client.key" >/dev/null
"$ferry" keygen -o "$T/other.key" >/dev/null
cp "$T/client.key.pub" "$T/allowed"

expect 0 "--help names the CURVE options" -- "$ferry" recv --help
contains out "--curve-server FILE"
contains out "--allow-any"
expect 2 "--curve-server without a key list" -- "$ferry" recv --bind tcp://127.0.0.1:0 --type pull \
  --curve-server "$T/server.key"
one_line_error "--curve-server without a key list"
expect 2 "--curve-client without --server-key" -- "$ferry" send --connect tcp://127.0.0.1:1 \
  --type push --curve-client "$T/client.key" x
one_line_error "--curve-client without --server-key"
expect 2 "server and client at once" -- "$ferry" send --connect tcp://127.0.0.1:1 --type push \
  --curve-client "$T/client.key" --curve-server "$T/server.key" --allow-any --server-key x x
one_line_error "server and client at once"
cp "$T/server.key" "$T/open.key"
chmod 644 "$T/open.key"
expect 1 "a secret key file open to others" -- "$ferry" recv --bind tcp://127.0.0.1:0 --type pull \
  --curve-server "$T/open.key" --allow-any
contains err "chmod 600"
expect 2 "a server key that is neither key nor file" -- "$ferry" send --connect tcp://127.0.0.1:1 \
  --type push --curve-client "$T/client.key" --server-key nonsense x
one_line_error "a server key that is neither key nor file"
expect 1 "CURVE on shm:// is refused" -- "$ferry" recv --bind shm://curve-cli-$$ --type pull \
  --curve-server "$T/server.key" --allow-any
contains err "tcp:// and ipc://"

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The messages: UTF-8 text, a JSON document, binary (NUL, 0xff) and 1 MiB.
head -c 1048576 /dev/urandom >"$T/big.bin"
printf 'naïve café – ✓ SECRETBODY-utf8\n{"k": "SECRETBODY-json", "n": [1, 2]}\n' >"$T/lines"
printf 'SECRETBODY-bin\0\377\001tail' >"$T/bin.bin"

# session PORT CURVE_RECV_ARGS CURVE_SEND_ARGS: 4 messages through one
# connection; the receiver's json output in $T/got
session() {
  local p=$1 rargs=$2 sargs=$3
  "$ferry" recv --bind "tcp://127.0.0.1:$p" --type pull -n 4 --format json --timeout 15000 $rargs \
    >"$T/got" 2>"$T/recv.err" &
  local r=$!
  "$ferry" send --connect "tcp://127.0.0.1:$p" --type push --timeout 15000 $sargs \
    --file "$T/bin.bin" --file "$T/big.bin" - <"$T/lines" 2>"$T/send.err"
  local s=$?
  wait $r
  local rc=$?
  [ $s = 0 ] && [ $rc = 0 ]
}

check_got() {
  /usr/bin/python3 - "$T/got" "$T/big.bin" "$T/bin.bin" <<'PY'
import base64, json, sys
msgs = [json.loads(l)["parts"][0] for l in open(sys.argv[1])]
def raw(p): return base64.b64decode(p["base64"]) if isinstance(p, dict) else p.encode()
want = [open(sys.argv[3], "rb").read(), open(sys.argv[2], "rb").read(),
        "naïve café – ✓ SECRETBODY-utf8".encode(), b'{"k": "SECRETBODY-json", "n": [1, 2]}']
got = [raw(m) for m in msgs]
sys.exit(0 if got == want else 1)
PY
}

secure_r="--curve-server $T/server.key --allow-keys $T/allowed"
secure_s="--curve-client $T/client.key --server-key $T/server.key.pub"
p=$(port)
if session "$p" "$secure_r" "$secure_s" && check_got; then
  pass "CURVE: UTF-8, JSON, binary and 1 MiB arrive byte for byte"
else
  fail "CURVE session"; cat "$T/recv.err" "$T/send.err"
fi
p=$(port)
if session "$p" "$secure_r" "--curve-client $T/client.key --server-key $(cat "$T/server.key.pub")" && check_got; then
  pass "--server-key as text"
else
  fail "--server-key as text"; cat "$T/recv.err" "$T/send.err"
fi

# A client whose key is not in the allow file: refused, and both say why.
p=$(port)
"$ferry" recv --bind "tcp://127.0.0.1:$p" --type rep -n 1 --timeout 3000 $secure_r >/dev/null \
  2>"$T/refusing.err" &
r=$!
expect 1 "a client key not allowed gets nothing through" -- "$ferry" send --connect \
  "tcp://127.0.0.1:$p" --type req --timeout 2000 --curve-client "$T/other.key" \
  --server-key "$T/server.key.pub" hello
contains err "does not admit our key"
wait $r
[ $? = 1 ] && pass "the server received nothing" || fail "the server received a message"
grep -qF "$(cat "$T/other.key.pub") is not on the allow list" "$T/refusing.err" \
  && pass "the server names the refused key" || { fail "server's message"; cat "$T/refusing.err"; }

# The same with a push, whose message would only be queued: the send waits
# for a peer that never gets in, says why, and exits 1 rather than 0.
p=$(port)
"$ferry" recv --bind "tcp://127.0.0.1:$p" --type pull -n 1 --timeout 3000 $secure_r >/dev/null \
  2>/dev/null &
r=$!
expect 1 "a refused push exits 1" -- "$ferry" send --connect "tcp://127.0.0.1:$p" --type push \
  --timeout 2000 --curve-client "$T/other.key" --server-key "$T/server.key.pub" hello
contains err "does not admit our key"
wait $r
[ $? = 1 ] && pass "the pull received nothing" || fail "the pull received a message"

# Two pulls dialed, one admitting the client and one not: round robin
# would give the refused one a message to lose, so the send waits for both
# and exits 1, and nothing reaches the one that admits it.
cp "$T/other.key.pub" "$T/only_other"
p=$(port)
q=$(port)
"$ferry" recv --bind "tcp://127.0.0.1:$p" --type pull -n 1 --timeout 3000 $secure_r >"$T/ok_got" \
  2>/dev/null &
r=$!
"$ferry" recv --bind "tcp://127.0.0.1:$q" --type pull -n 1 --timeout 3000 \
  --curve-server "$T/server.key" --allow-keys "$T/only_other" >/dev/null 2>/dev/null &
r2=$!
expect 1 "a push to two, one refusing, exits 1" -- "$ferry" send --connect "tcp://127.0.0.1:$p" \
  --connect "tcp://127.0.0.1:$q" --type push --timeout 2000 $secure_s m1 m2
contains err "does not admit our key"
wait $r
wait $r2
[ -s "$T/ok_got" ] && fail "a message went out before both were connected" \
  || pass "nothing was sent before both were connected"

# The proxy: a CURVE frontend on tcp:// (the server), a plain backend on
# shm:// (local, admitted by uid): the message crosses both.
p=$(port)
"$ferry" proxy --type pull-push --frontend "tcp://127.0.0.1:$p" --backend "shm://t-cli-curve-$$" \
  --curve-server "$T/server.key" --allow-keys "$T/allowed" 2>"$T/proxy.err" &
px=$!
"$ferry" recv --connect "shm://t-cli-curve-$$" --type pull -n 1 --timeout 10000 >"$T/via" &
rv=$!
"$ferry" send --connect "tcp://127.0.0.1:$p" --type push --timeout 10000 $secure_s \
  'through the proxy ✓' 2>"$T/send.err"
wait $rv && grep -q 'through the proxy ✓' "$T/via" && pass "CURVE tcp:// -> proxy -> shm://" \
  || { fail "CURVE through the proxy"; cat "$T/proxy.err" "$T/send.err"; }
kill $px
wait $px && pass "the proxy exits 0 on SIGTERM" || fail "proxy exit"

# The capture: the bodies never on the wire under CURVE, and they are in a
# plain session (so the check can fail).
# fins PCAP [any]: 0 when the file (as written so far) holds two TCP FINs
# (with "any": at least one packet of any kind). Read with a few lines of
# Python rather than tshark, which is slow to start.
fins() {
  /usr/bin/python3 - "$@" <<'PY'
import struct, sys
try:
    d = open(sys.argv[1], "rb").read()
except OSError:
    sys.exit(1)
if len(d) < 24:
    sys.exit(1)
e = "<" if d[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
link = struct.unpack(e + "I", d[20:24])[0]
off, n = 24, 0
while off + 16 <= len(d):
    incl = struct.unpack(e + "I", d[off + 8:off + 12])[0]
    pkt = d[off + 16:off + 16 + incl]
    off += 16 + incl
    ip = pkt[14:] if link == 1 else pkt[16:] if link == 113 else pkt[4:] if link == 0 else pkt
    if len(ip) >= 20 and ip[0] >> 4 == 4 and ip[9] == 6:
        tcp = ip[(ip[0] & 15) * 4:]
        if len(tcp) >= 14 and tcp[13] & 1:
            n += 1
    if len(sys.argv) > 2:
        sys.exit(0)
sys.exit(0 if n >= 2 else 1)
PY
}

capture() { # PORT RECV_ARGS SEND_ARGS PCAP
  tshark -i lo -B 64 -f "tcp port $1" -F pcap -w "$4" >"$T/tshark.err" 2>&1 &
  local t=$!
  local i
  for i in $(seq 100); do # capturing when a probe's packets (a refused connect) are in the file
    /usr/bin/python3 -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
except OSError:
    pass' "$1"
    fins "$4" any && break
    sleep 0.1
  done
  session "$1" "$2" "$3"
  local rc=$?
  for i in $(seq 200); do # until both FINs are in the file: every byte was captured
    fins "$4" && break
    sleep 0.1
  done
  kill -INT $t
  wait $t
  return $rc
}
if command -v tshark >/dev/null && [ "$(id -u)" = 0 ]; then
  p=$(port)
  if capture "$p" "$secure_r" "$secure_s" "$T/secure.pcap" && check_got && fins "$T/secure.pcap"; then
    pass "captured a CURVE session"
    n=$(tshark -r "$T/secure.pcap" -Y "tcp.len > 0" 2>/dev/null | wc -l)
    [ "$n" -gt 4 ] && pass "the capture holds its $n data segments" || fail "capture empty ($n)"
    grep -c -a "SECRETBODY" "$T/secure.pcap" >/dev/null && fail "a body is in clear on the wire" \
      || pass "no body appears anywhere in the captured bytes"
    head -c 64 "$T/big.bin" >"$T/needle"
    /usr/bin/python3 -c 'import sys; sys.exit(open(sys.argv[2],"rb").read() in open(sys.argv[1],"rb").read())' \
      "$T/secure.pcap" "$T/needle" && pass "nor the binary one's first 64 bytes" \
      || fail "the binary body is in clear"
  else
    fail "capture of the CURVE session (or it lacks the FINs: incomplete)"; cat "$T/tshark.err" "$T/recv.err" "$T/send.err"
  fi
  p=$(port)
  if capture "$p" "" "" "$T/plain.pcap" && fins "$T/plain.pcap"; then
    grep -q -a "SECRETBODY-json" "$T/plain.pcap" && grep -q -a "SECRETBODY-bin" "$T/plain.pcap" \
      && pass "the same session in clear shows the bodies" \
      || fail "the plain capture lacks the body: the check proves nothing"
  else
    fail "capture of the plain session (or it lacks the FINs: incomplete)"
  fi
else
  echo "skip - capture: needs tshark and root"
fi
finish
