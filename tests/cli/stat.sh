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
finish
