#!/usr/bin/env bash
# stat.sh FERRY: `ferry stat` as a user runs it: usage errors; a PUB whose
# subscriber stops reading shows its drops rising in two `--json` listings;
# the PUB SIGKILLed disappears from the listing and its counters file goes.
. "$(dirname "$0")/lib.sh"
ferry=$1
expect 2 "bad argument" -- "$ferry" stat nonsense
one_line_error "bad argument"
expect 2 "two arguments" -- "$ferry" stat 1 2
one_line_error "two arguments"
expect 2 "unknown option" -- "$ferry" stat --frobnicate
one_line_error "unknown option"
expect 0 "--help" -- "$ferry" stat --help
contains out "usage: ferry stat"

# field PID KEY: the sum of counters.KEY over PID's sockets (-1: none listed)
field() {
  "$ferry" stat "$1" --json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["schema"] == 1 and "ferry_version" in d
s = d["sockets"]
print(sum(x["counters"][sys.argv[1]] for x in s) if s else -1)' "$2" 2>>"$T/field.err"
}
# wait_for DESCRIPTION COMMAND...: polls COMMAND until it succeeds, 20 s at most
wait_for() {
  local what=$1; shift
  for _ in $(seq 200); do "$@" && { pass "$what"; return 0; }; sleep 0.1; done
  fail "$what (20 s)"; return 1
}

url="shm://t-cli-stat-$$"
"$ferry" recv --bind "$url" --type sub >/dev/null &
sub=$!
"$ferry" send --connect "$url" --type pub --repeat 0 "tick $$ {\"héllo\": 1}" >/dev/null &
pub=$!
sent_some() { [ "$(field $pub messages_sent)" -gt 0 ]; }
wait_for "the publisher is listed, sending" sent_some
"$ferry" stat "$url" >"$T/text"
contains text "pub"
contains text "dial $url"
contains text "listen $url"
expect 2 "--watch with a bad interval" -- "$ferry" stat --watch=0
one_line_error "--watch with a bad interval"
expect 2 "--watch with --json" -- "$ferry" stat --watch --json
one_line_error "--watch with --json"
# --watch: rates between looks; SIGINT ends it with exit 0
"$ferry" stat $pub --watch=0.2 >"$T/watch" &
w=$!
rated() { # a look after the first: the publisher's out msg/s is a number above 0
  # columns: PID COMMAND #N TYPE HOW URL, in msg/s, in B/s, out msg/s (9th)
  awk -v pid=$pub '$1 == pid && $9 ~ /^[0-9.]+[kMG]?$/ && $9 != "0" {found=1} END {exit !found}' "$T/watch"
}
wait_for "--watch shows the publisher's rate" rated
kill -INT $w
wait $w && pass "--watch ends on SIGINT with exit 0" || fail "--watch exit on SIGINT"
kill -STOP $sub # a subscriber that stops reading: its ring fills, the PUB drops
dropping() { d1=$(field $pub dropped); [ "$d1" -gt 0 ]; }
wait_for "drops counted" dropping
rising() { d2=$(field $pub dropped); [ "$d2" -gt "$d1" ]; }
wait_for "drops rising between two listings" rising
kill -KILL $pub
wait $pub 2>/dev/null
gone() { [ "$(field $pub messages_sent)" = -1 ] && [ ! -e "/dev/shm/ferry-stat.$pub" ]; }
wait_for "the killed publisher is gone, and its file" gone
kill -CONT $sub
kill $sub
wait $sub 2>/dev/null
# a process that exits removes its own file (no sweep needed: no ferry call here)
[ ! -e "/dev/shm/ferry-stat.$sub" ] && pass "the subscriber's file removed at its exit" \
  || fail "the subscriber's file outlived it"
# ferry ls lists the ipc:// and tcp:// endpoints of live sockets too
"$ferry" recv --bind "ipc://@t-cli-stat-$$" --type pull >/dev/null &
lr=$!
listed() { "$ferry" ls >"$T/ls" && grep -q "^endpoint ipc://@t-cli-stat-$$ .* $lr " "$T/ls"; }
wait_for "ferry ls shows the ipc:// listener with its pid" listed
"$ferry" ls --json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(o["name"] == sys.argv[1] and o["kind"] == "endpoint" and o["creator_pid"] == int(sys.argv[2])
                  for o in d["objects"]) else 1)' "ipc://@t-cli-stat-$$" $lr \
  && pass "ferry ls --json has it" || fail "ferry ls --json lacks the ipc:// listener"
kill $lr
wait $lr 2>/dev/null
finish
