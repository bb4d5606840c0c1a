#!/usr/bin/env bash
# proxy.sh FERRY: `ferry proxy` as a user runs it: bad arguments are usage
# errors (exit 2, one line); a pull-push proxy from shm:// to ipc:// moves
# UTF-8, JSON and a 2 MB binary message intact; SIGUSR1 prints the
# counters on stderr; SIGTERM stops it with exit 0; --lazy-rings and
# --ring-size are taken.
. "$(dirname "$0")/lib.sh"
ferry=$1
expect 2 "no arguments" -- "$ferry" proxy
one_line_error "no arguments"
expect 2 "bad --type" -- "$ferry" proxy --type nope -f shm://a -b shm://b
one_line_error "bad --type"
expect 2 "no backend" -- "$ferry" proxy --type pull-push -f shm://a
one_line_error "no backend"
expect 2 "bad --stats" -- "$ferry" proxy --type pull-push -f shm://a -b shm://b --stats 0
one_line_error "bad --stats"
expect 2 "bad URL" -- "$ferry" proxy --type pull-push -f nowhere -b shm://b
one_line_error "bad URL"
expect 2 "bad --ring-size" -- "$ferry" proxy --type pull-push -f shm://a -b shm://b --ring-size 4Kx
one_line_error "bad --ring-size"
expect 2 "--ring-size too large" -- "$ferry" proxy --type pull-push -f shm://a -b shm://b \
  --ring-size 257M
expect 2 "unknown option" -- "$ferry" proxy --frobnicate
one_line_error "unknown option"
expect 0 "--help" -- "$ferry" proxy --help
contains out "usage: ferry proxy"

in="shm://t-cli-proxy-$$" out="ipc://@t-cli-proxy-$$"
"$ferry" proxy --type pull-push --frontend "$in" --backend "$out" 2>"$T/proxy.err" &
px=$!
"$ferry" recv --connect "$out" --type pull -n 3 --format json --timeout 10000 >"$T/got" &
rv=$!
"$ferry" send --connect "$in" --type push 'héllo 世界' '{"k": [1, "x"]}' >/dev/null
head -c 2000000 /dev/urandom >"$T/big.bin"
"$ferry" send --connect "$in" --type push --file "$T/big.bin" >/dev/null
wait $rv && pass "recv got 3 messages through the proxy" || fail "recv through the proxy"
head -2 "$T/got" >"$T/text"
printf '%s\n' '{"parts": ["héllo 世界"]}' '{"parts": ["{\"k\": [1, \"x\"]}"]}' >"$T/want"
cmp -s "$T/text" "$T/want" && pass "UTF-8 and JSON intact" || { fail "text changed"; cat "$T/text"; }
/usr/bin/python3 -c '
import base64, json, sys
m = json.loads(open(sys.argv[1]).read().splitlines()[2])["parts"][0]
sys.exit(0 if base64.b64decode(m["base64"]) == open(sys.argv[2], "rb").read() else 1)' \
  "$T/got" "$T/big.bin" && pass "2 MB binary intact" || fail "binary changed"
kill -USR1 $px
for i in $(seq 100); do grep -q "frontend received" "$T/proxy.err" && break; sleep 0.05; done
grep -q "frontend received 3 messages" "$T/proxy.err" && pass "SIGUSR1: counters on stderr" \
  || { fail "SIGUSR1"; cat "$T/proxy.err"; }
kill -TERM $px
wait $px && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $?"

# --lazy-rings and --ring-size: the same stream, 64 KiB rings left to
# fault in as it goes
"$ferry" proxy --type pull-push --lazy-rings --ring-size 64K -f "$in-lazy" -b "$out-lazy" \
  2>"$T/lazy.err" &
px=$!
for i in $(seq 100); do "$ferry" ls --json >"$T/ls.json" && grep -q "$in-lazy" "$T/ls.json" && break
  sleep 0.05; done
/usr/bin/python3 -c '
import json, sys
objs = json.load(open(sys.argv[1]))
objs = objs if isinstance(objs, list) else objs.get("objects", [])
sizes = [o.get("ring_size") for o in objs if o.get("name") == sys.argv[2]]
sys.exit(0 if sizes == [65536] else 1)' "$T/ls.json" "$in-lazy" \
  && pass "--ring-size: the listener's rings are 64 KiB" || { fail "--ring-size"; cat "$T/ls.json"; }
"$ferry" recv --connect "$out-lazy" --type pull -n 1 --timeout 10000 >"$T/lazy" &
rv=$!
"$ferry" send --connect "$in-lazy" --type push 'paresseux' >/dev/null
wait $rv && grep -qx 'paresseux' "$T/lazy" && pass "--lazy-rings: the message went through" \
  || { fail "--lazy-rings"; cat "$T/lazy" "$T/lazy.err"; }
kill -TERM $px
wait $px && pass "--lazy-rings: SIGTERM, exit 0" || fail "--lazy-rings: exit $?"
finish
