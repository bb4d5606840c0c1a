#!/usr/bin/env bash
# ferry recv --format and ferry send --format: every format, each direction,
# over shm://, ipc:// and tcp://; the replay pipe recv | send; raw, --file,
# --more, --repeat/--interval; bad input named by its line, nothing accepted
# lost. formats_check.py reads ferry's output independently of ferry's code.
. "$(dirname "$0")/lib.sh"
ferry=$1
check() { python3 "$(dirname "$0")/formats_check.py" "$@"; }
check gen "$T/msgs.jsonl"
N=$(wc -l <"$T/msgs.jsonl")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# new_url TRANSPORT: a fresh endpoint in $U (no subshell: the counter must move)
n_url=0
new_url() {
  n_url=$((n_url + 1))
  case $1 in
  shm) U="shm://t-cli-fmt-$$-$n_url" ;;
  ipc) U="ipc://$T/fmt-$n_url.sock" ;;
  tcp) U="tcp://127.0.0.1:$(free_port)" ;;
  esac
}
# recv_bg URL OUT ARGS...: a pull receiver in the background, pid in $rp
recv_bg() {
  local u=$1 out=$2; shift 2
  "$ferry" recv --bind "$u" --type pull --timeout 10000 "$@" >"$out" 2>"$out.err" &
  rp=$!
}
waited() { # waited PID WHAT: the background command exited 0
  if wait "$1"; then pass "$2 exited 0"; else fail "$2 exited non-zero"; cat "$3.err" 2>/dev/null; fi
}

for tr in shm ipc tcp; do
  # recv in every format: the same messages (UTF-8, JSON with escapes, tabs,
  # all 256 byte values, multipart, empty parts), sent as JSON Lines
  for fmt in text quoted json hex; do
    new_url $tr; u=$U
    recv_bg "$u" "$T/$tr.$fmt" -n "$N" --format "$fmt"
    expect 0 "$tr: send --format json - ($N messages)" -- \
      "$ferry" send --connect "$u" --type push --format json - --timeout 10000 <"$T/msgs.jsonl"
    waited $rp "$tr: recv --format $fmt" "$T/$tr.$fmt"
    check check "$fmt" "$T/msgs.jsonl" "$T/$tr.$fmt" && pass "$tr: recv --format $fmt printed every message exactly" \
      || fail "$tr: recv --format $fmt output"
  done
  # the replay pipe: recv --format F | send --format F - reproduces every message
  for fmt in quoted json hex; do
    new_url $tr; u1=$U; new_url $tr; u2=$U
    recv_bg "$u2" "$T/replay.$tr.$fmt" -n "$N" --format json
    final=$rp
    ( "$ferry" recv --bind "$u1" --type pull -n "$N" --format $fmt --timeout 10000 |
      "$ferry" send --connect "$u2" --type push --format $fmt - --timeout 10000 ) 2>"$T/pipe.err" &
    pipe=$!
    expect 0 "$tr: send the originals for the $fmt replay" -- \
      "$ferry" send --connect "$u1" --type push --format json - --timeout 10000 <"$T/msgs.jsonl"
    waited $pipe "$tr: recv --format $fmt | send --format $fmt -" "$T/pipe"
    waited $final "$tr: the replay's receiver" "$T/replay.$tr.$fmt"
    check check json "$T/msgs.jsonl" "$T/replay.$tr.$fmt" && pass "$tr: $fmt replay is byte for byte" \
      || fail "$tr: $fmt replay differs"
  done
  # raw both ways: all 256 byte values as one message, from --file and from stdin
  python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)' >"$T/bytes.bin"
  for how in file stdin; do
    new_url $tr; u=$U
    recv_bg "$u" "$T/raw.$tr.$how" -n 1 --raw
    if [ $how = file ]; then
      expect 0 "$tr: send --file" -- "$ferry" send --connect "$u" --type push --file "$T/bytes.bin" --timeout 10000
    else
      expect 0 "$tr: send --format raw -" -- "$ferry" send --connect "$u" --type push --format raw - --timeout 10000 <"$T/bytes.bin"
    fi
    waited $rp "$tr: recv --raw" "$T/raw.$tr.$how"
    cmp "$T/bytes.bin" "$T/raw.$tr.$how" >/dev/null && pass "$tr: raw $how: every byte as it was" || fail "$tr: raw $how bytes"
  done
done

new_url shm; u=$U
# text input: one line, one message, bytes as they are (tab, backslash, UTF-8)
recv_bg "$u" "$T/text.out" -n 2 --format json
printf 'h\303\251llo\tw\\x41\nsecond\n' | "$ferry" send --connect "$u" --type push - >/dev/null
waited $rp "text input" "$T/text.out"
python3 -c '
import json,sys
got=[json.loads(l)["parts"] for l in open(sys.argv[1])]
assert got==[["héllo\tw\\x41"],["second"]], got' "$T/text.out" && pass "text lines are sent as they are" \
  || { fail "text input"; cat "$T/text.out"; }

# --more: the arguments are the parts of one message, in any format
new_url shm; u=$U
recv_bg "$u" "$T/more.out" -n 2 --format quoted
expect 0 "send --more" -- "$ferry" send --connect "$u" --type push --more A "" "C D"
expect 0 "send --more --format hex" -- "$ferry" send --connect "$u" --type push --format hex --more 00ff "" 41
waited $rp "recv of --more" "$T/more.out"
printf '"A" "" "C D"\n"\\x00\\xff" "" "A"\n' | cmp - "$T/more.out" >/dev/null && pass "--more sent multipart messages" \
  || { fail "--more"; cat "$T/more.out"; }

# --repeat and --interval: stdin read once, sent three times, 20 ms apart
new_url shm; u=$U
recv_bg "$u" "$T/rep.out" -n 6
t0=$(date +%s%N)
printf 'a\nb\n' | "$ferry" send --connect "$u" --type push --repeat 3 --interval 20 - >/dev/null
t1=$(date +%s%N)
waited $rp "recv of --repeat" "$T/rep.out"
printf 'a\nb\na\nb\na\nb\n' | cmp - "$T/rep.out" >/dev/null && pass "--repeat 3 sent the lines 3 times" \
  || { fail "--repeat"; cat "$T/rep.out"; }
[ $(((t1 - t0) / 1000000)) -ge 100 ] && pass "--interval 20: 5 gaps took at least 100 ms" || fail "--interval too fast"

# req: the reply is printed in the --format
new_url shm; u=$U
"$ferry" recv --bind "$u" --type rep -n 1 --timeout 10000 >/dev/null 2>&1 &
rp=$!
expect 0 "send --type req --format json" -- "$ferry" send --connect "$u" --type req --format json '{"parts": ["q\t1"]}' --timeout 10000
printf '{"parts": ["q\\t1"]}\n' | cmp - "$T/out" >/dev/null && pass "req reply printed as json" || { fail "req reply"; cat "$T/out"; }
wait $rp

# bad input: named by its line, exit 2, the lines before it sent, none after
bad_input() { # FORMAT LINES WANT_LINE WANT_WHY
  local u; new_url shm; u=$U
  recv_bg "$u" "$T/bad.out" -n 3 --format json --timeout 2000
  printf "$2" >"$T/bad.in"
  expect 2 "send --format $1 with a bad line $3" -- "$ferry" send --connect "$u" --type push --format "$1" - --timeout 10000 <"$T/bad.in"
  one_line_error "bad $1"
  contains err "stdin line $3: bad $1: $4"
  wait $rp # it times out waiting for a third message: exit 1
  local good=$(($3 - 1))
  [ "$(wc -l <"$T/bad.out")" = $good ] && pass "the $good line(s) before it were sent, none after" \
    || { fail "lines sent before the bad one"; cat "$T/bad.out"; }
}
bad_input json '{"parts": ["one"]}\n{"parts": ["two"]}\n{"parts": ["three"\n{"parts": ["four"]}\n' 3 "expected ',' or ']'"
bad_input json '{"parts": ["one"]}\n{"parts": [{"base64": "!!!!"}]}\n' 2 "invalid base64"
bad_input json '{"parts": ["\\ud800"]}\n' 1 "high surrogate"
bad_input hex '6f6e65\n74776\n' 2 "odd number of hex digits"
bad_input hex '6f6e65\n6f6e65\nzz\n' 3 "bad hex digit 'z' at column 1"
bad_input quoted '"one"\n"t\\qo"\n' 2 "bad escape"
bad_input quoted 'one\n' 1 "expected '\"'"

# usage errors
new_url shm; u=$U
expect 2 "a bad argument in --format hex" -- "$ferry" send --connect "$u" --type push --format hex zz
one_line_error "bad hex argument"
contains err "argument 1: bad hex"
expect 2 "an unknown --format" -- "$ferry" recv --bind "$u" --type pull --format yaml
one_line_error "unknown format"
expect 2 "--more with -" -- "$ferry" send --connect "$u" --type push --more a -
one_line_error "--more with -"
expect 2 "- twice" -- "$ferry" send --connect "$u" --type push - -
expect 2 "--repeat on recv" -- "$ferry" recv --bind "$u" --type pull --repeat 2
one_line_error "--repeat on recv"
expect 2 "bad --interval" -- "$ferry" send --connect "$u" --type push --interval -1 x
expect 1 "--file that does not exist" -- "$ferry" send --connect "$u" --type push --file "$T/nope"
one_line_error "missing --file"
contains err "No such file"

expect 0 "recv --help" -- "$ferry" recv --help
contains out "--format"
contains out "Not reversible"
for f in text quoted json hex raw; do contains out "  $f "; done
expect 0 "send --help" -- "$ferry" send --help
contains out "--format"
contains out "--more"
finish
