#!/usr/bin/env bash
# ferry send / ferry recv over shm://: every pattern, stdin, --raw, errors,
# and shm:// endpoints in ferry ls / ferry rm.
. "$(dirname "$0")/lib.sh"
ferry=$1
u=shm://t-cli-msg-$$

# wait_listed URL: until `ferry ls` lists the endpoint (bounded retries, no sleep)
wait_listed() {
  for _ in $(seq 1 2000); do "$ferry" ls | grep -q "$1 " && return 0; done
  fail "$1 never appeared in ferry ls"; return 1
}

# push/pull, arguments and stdin lines, sender first (connects before the listener)
printf 'line two\nline three\n' | "$ferry" send --connect $u-pp --type push one - >"$T/send.out" 2>"$T/send.err" &
sp=$!
expect 0 "recv pull -n 3" -- "$ferry" recv --bind $u-pp --type pull -n 3 --timeout 10000
printf 'one\nline two\nline three\n' | diff - "$T/out" >/dev/null && pass "pull got the 3 messages in order" \
  || { fail "pull output"; cat "$T/out"; }
wait $sp && pass "send exited 0" || fail "send exit code"

# req/rep with --reply, then echo
"$ferry" recv --bind $u-rr --type rep --reply OK -n 2 >"$T/rep.out" 2>&1 &
rp=$!
expect 0 "send req" -- "$ferry" send --connect $u-rr --type req x y --timeout 10000
printf 'OK\nOK\n' | diff - "$T/out" >/dev/null && pass "req printed both replies" || { fail "req replies"; cat "$T/out"; }
wait $rp; printf 'x\ny\n' | diff - "$T/rep.out" >/dev/null && pass "rep printed both requests" || { fail "rep output"; cat "$T/rep.out"; }
"$ferry" recv --bind $u-echo --type rep -n 1 >/dev/null 2>&1 &
rp=$!
expect 0 "send req to an echoing rep" -- "$ferry" send --connect $u-echo --type req "echo me" --timeout 10000
contains out "echo me"
wait $rp

# pub/sub: the sub filters on a prefix; the pub waits for a subscriber
"$ferry" recv --connect $u-ps --type sub --subscribe a -n 2 --timeout 10000 >"$T/sub.out" 2>"$T/sub.err" &
subp=$!
expect 0 "send pub --bind" -- "$ferry" send --bind $u-ps --type pub a1 b1 a2 --timeout 10000
wait $subp && pass "sub exited 0" || { fail "sub exit"; cat "$T/sub.err"; }
printf 'a1\na2\n' | diff - "$T/sub.out" >/dev/null && pass "sub got only its prefix" || { fail "sub output"; cat "$T/sub.out"; }

# pair, and --raw keeps bytes exactly; the default text format keeps tabs and
# backslashes, and escapes control bytes (formats.sh tests every format)
"$ferry" recv --bind $u-raw --type pair -n 1 --raw >"$T/raw.out" &
rp=$!
expect 0 "send pair" -- "$ferry" send --connect $u-raw --type pair "$(printf 'tab\there')"
wait $rp
printf 'tab\there' | cmp - "$T/raw.out" >/dev/null && pass "--raw wrote the bytes exactly" || fail "--raw bytes"
"$ferry" recv --bind $u-esc --type pull -n 1 >"$T/esc.out" &
rp=$!
"$ferry" send --connect $u-esc --type push "$(printf 'a\tb\\c\001')" >/dev/null
wait $rp
printf 'a\tb\\c\\x01\n' | cmp - "$T/esc.out" >/dev/null && pass "text keeps tab and backslash, escapes \\x01" \
  || { fail "escaping"; cat "$T/esc.out"; }

# dealer to router: the router prints the sender's routing id (generated:
# 5 bytes, 0x00 first) as the first part
"$ferry" recv --bind $u-rt --type router -n 1 --format json >"$T/rt.out" 2>&1 &
rp=$!
expect 0 "send dealer to a router" -- "$ferry" send --connect $u-rt --type dealer --more a "" b --timeout 10000
wait $rp
python3 -c '
import base64, json, sys
p = json.loads(open(sys.argv[1]).read())["parts"]
rid = base64.b64decode(p[0]["base64"]) if isinstance(p[0], dict) else p[0].encode()
sys.exit(0 if len(p) == 4 and len(rid) == 5 and rid[0] == 0 and p[1:] == ["a", "", "b"] else 1)
' "$T/rt.out" && pass "router printed the routing id, then the parts" || { fail "router output"; cat "$T/rt.out"; }
# send --type router: a message naming a peer that is not there waits up to
# --timeout, then exits 1 naming the id
"$ferry" recv --connect $u-rs --type dealer -n 1 --timeout 10000 >/dev/null 2>&1 &
dp=$!
expect 1 "send router to a missing peer" -- "$ferry" send --bind $u-rs --type router --more nobody hi --timeout 300
one_line_error "router to a missing peer"
contains err 'routing id "nobody"'
kill $dp 2>/dev/null; wait $dp 2>/dev/null

# errors: usage (2) and runtime (1), one line each
expect 2 "bad url" -- "$ferry" recv --bind nope --type pull
one_line_error "bad url"
expect 2 "bad shm name" -- "$ferry" send --connect shm://a/b --type push x
one_line_error "bad shm name"
expect 2 "bad type" -- "$ferry" recv --bind $u-x --type nosuch
expect 2 "missing type" -- "$ferry" recv --bind $u-x
expect 2 "recv type on send" -- "$ferry" send --connect $u-x --type pull x
expect 2 "missing option value" -- "$ferry" recv --bind
expect 2 "no message" -- "$ferry" send --connect $u-x --type push
expect 2 "bad count" -- "$ferry" recv --bind $u-x --type pull -n zero
expect 1 "recv timeout" -- "$ferry" recv --bind $u-tmo --type pull --timeout 100
one_line_error "recv timeout"
expect 1 "send --bind timeout" -- "$ferry" send --bind $u-tmo2 --type push x --timeout 100
one_line_error "send timeout"
contains err "waiting for a peer"

# an incompatible peer is refused with a clear error
"$ferry" recv --bind $u-types --type rep -n 1 --timeout 10000 >/dev/null 2>&1 &
rp=$!
wait_listed $u-types
expect 1 "push to a rep" -- "$ferry" send --connect $u-types --type push x --timeout 2000
one_line_error "incompatible"
contains err "cannot talk to a rep"
kill $rp; wait $rp 2>/dev/null

# endpoints in ls and rm: live is listed and refused; dead vanishes
"$ferry" recv --bind $u-ls --type pull --timeout 100000 >/dev/null 2>&1 &
lp=$!
wait_listed $u-ls
expect 0 "ls lists the endpoint" -- "$ferry" ls
grep -E "^endpoint +$u-ls +[0-9]+ +- +[a-z0-9]+ +$lp +yes" "$T/out" >/dev/null \
  && pass "endpoint row names the owner pid $lp" || { fail "endpoint row"; cat "$T/out"; }
expect 0 "ls --json" -- "$ferry" ls --json
python3 -c "
import json,sys; d=json.load(open('$T/out'))
e=[o for o in d['objects'] if o['name']=='$u-ls'][0]
assert e['kind']=='endpoint' and e['creator_pid']==$lp and e['peers']==0" \
  && pass "ls --json describes the endpoint" || fail "ls --json endpoint"
expect 1 "rm a live endpoint" -- "$ferry" rm $u-ls
one_line_error "rm live endpoint"
contains err "owned by pid $lp"
kill -9 $lp; wait $lp 2>/dev/null
expect 0 "ls after kill" -- "$ferry" ls
lacks out "$u-ls "
expect 1 "rm a dead endpoint" -- "$ferry" rm $u-ls
contains err "no such endpoint"

# SIGTERM ends recv gracefully with exit 0
"$ferry" recv --bind $u-term --type pull >/dev/null 2>&1 &
tp=$!
wait_listed $u-term
kill -TERM $tp; wait $tp; rc=$?
[ $rc = 0 ] && pass "recv exits 0 on SIGTERM" || fail "recv exit $rc on SIGTERM"

# tcp:// and ipc:// (ZMTP 3.1): the same commands, the same behaviour
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
printf 'a\nb\n' | "$ferry" send --connect tcp://127.0.0.1:$port --type push - >/dev/null 2>"$T/tcp.err" &
sp=$!
expect 0 "recv pull over tcp" -- "$ferry" recv --bind tcp://127.0.0.1:$port --type pull -n 2 --timeout 10000
printf 'a\nb\n' | diff - "$T/out" >/dev/null && pass "tcp: pull got both, in order" || { fail "tcp pull"; cat "$T/out"; }
wait $sp && pass "tcp: send exited 0" || { fail "tcp send"; cat "$T/tcp.err"; }
"$ferry" recv --bind "ipc://$T/rr.sock" --type rep --reply OK -n 1 >"$T/rep.out" 2>&1 &
rp=$!
expect 0 "send req over ipc" -- "$ferry" send --connect "ipc://$T/rr.sock" --type req hi --timeout 10000
contains out OK
wait $rp
port=$(free_port)
"$ferry" recv --connect tcp://127.0.0.1:$port --type sub --subscribe a -n 1 --timeout 10000 >"$T/sub.out" 2>&1 &
subp=$!
expect 0 "send pub over tcp" -- "$ferry" send --bind tcp://127.0.0.1:$port --type pub b1 a1 --timeout 10000
wait $subp && grep -qx a1 "$T/sub.out" && pass "tcp: sub got a1 only" || { fail "tcp sub"; cat "$T/sub.out"; }
expect 1 "recv on a free port names it, then times out" -- "$ferry" recv --bind "tcp://127.0.0.1:*" --type pull --timeout 100
contains err "listening at tcp://127.0.0.1:"
expect 2 "a tcp url without a port" -- "$ferry" send --connect tcp://127.0.0.1 --type push x
one_line_error "tcp url without a port"

for cmd in send recv; do
  expect 0 "$cmd --help" -- "$ferry" $cmd --help
  contains out "usage: ferry $cmd"
done
finish
