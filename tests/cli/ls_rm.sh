#!/usr/bin/env bash
# `ferry ls` and `ferry rm` on live and stale objects, made by a helper
# process that the test starts and kills.
. "$(dirname "$0")/lib.sh"
ferry=$1 hold=$2
r=t-cli-region-$$ s=t-cli-sem-$$ u=t-cli-undo-$$ f=t-cli-foreign-$$

# start_holder FIFO ARGS...: runs the helper with its stdin on a fifo we keep
# open; waits until it printed "ready". Sets $holder_pid.
start_holder() {
  local fifo=$1 line; shift
  mkfifo "$fifo" "$fifo.out"
  "$hold" "$@" <"$fifo" >"$fifo.out" &
  holder_pid=$!
  exec {fd}>"$fifo"          # the helper's stdin stays open while we hold fd
  read -r line <"$fifo.out"  # blocks until the helper says it is ready
  [ "$line" = ready ] || fail "holder $* did not start"
}

start_holder "$T/f1" region $r 4096; p1=$holder_pid
start_holder "$T/f2" sem $s 3; p2=$holder_pid
start_holder "$T/f3" sem $u 1 undo; p3=$holder_pid
printf 'not a ferry object' > /dev/shm/ferry.$f

expect 0 "ls" -- "$ferry" ls
contains out "KIND"
contains out "region   $r"
contains out "sem      $s"
contains out "value=3"
contains out "value=1 undo"
grep -E "^region +$r +4096 +0600 +[a-z0-9]+ +$p1 +yes +1 " "$T/out" >/dev/null \
  && pass "ls: region row has size, mode, creator $p1 alive, 1 attached" \
  || { fail "ls region row"; cat "$T/out"; }
grep -E "^\? +$f .*not a ferry object" "$T/out" >/dev/null \
  && pass "ls: foreign object listed with its error" || { fail "ls foreign"; cat "$T/out"; }

expect 0 "ls --json" -- "$ferry" ls --json
python3 - "$T/out" "$r" "$p1" <<'PY' && pass "ls --json parses and describes the region" || fail "ls --json content"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["schema"] == 1 and doc["ferry_version"]
o = {x["name"]: x for x in doc["objects"]}[sys.argv[2]]
assert o["kind"] == "region" and o["size"] == 4096 and o["creator_pid"] == int(sys.argv[3])
assert o["creator_alive"] is True and o["attached"] == 1 and o["stale"] is False
PY

# kill the region's creator: it is now dead and unmapped, i.e. stale
kill -9 $p1; wait $p1 2>/dev/null
expect 0 "ls after kill" -- "$ferry" ls
grep -E "^region +$r +4096 +0600 +[a-z0-9]+ +$p1 +no +0 " "$T/out" >/dev/null \
  && pass "ls: killed creator shows as dead, 0 attached" || { fail "ls dead row"; cat "$T/out"; }
expect 0 "ls --stale" -- "$ferry" ls --stale
contains out "$r"
lacks out "$s"

# rm --stale removes the dead one only; live ones stay
expect 0 "rm --stale" -- "$ferry" rm --stale
[ -e /dev/shm/ferry.$r ] && fail "stale region still there" || pass "stale region removed"
[ -e /dev/shm/ferry.$s ] && pass "live semaphore kept" || fail "live semaphore removed"

# rm a live object by name (like ipcrm): the name goes at once
expect 0 "rm live sem" -- "$ferry" rm $s
[ -e /dev/shm/ferry.$s ] && fail "sem still there" || pass "sem removed"
# rm of the undo kind removes the kernel semaphore too
semid_count() { ipcs -s | awk 'NR>3 && NF' | wc -l; }
before=$(semid_count)
expect 0 "rm undo sem" -- "$ferry" rm $u
after=$(semid_count)
[ "$after" -lt "$before" ] && pass "kernel semaphore removed ($before -> $after)" \
  || fail "kernel semaphore count $before -> $after"

expect 1 "rm foreign file" -- "$ferry" rm $f
one_line_error "rm foreign"
contains err "not a ferry object"
[ -e /dev/shm/ferry.$f ] && pass "foreign file left alone" || fail "foreign file removed"
rm -f /dev/shm/ferry.$f
expect 1 "rm already removed" -- "$ferry" rm $r
one_line_error "rm gone"

for p in $p2 $p3; do kill $p 2>/dev/null; wait $p 2>/dev/null; done
finish
