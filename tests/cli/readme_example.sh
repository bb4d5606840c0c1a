#!/usr/bin/env bash
# The C example in README.md compiles and runs as printed there.
. "$(dirname "$0")/lib.sh"
src=$1 lib=$2 ferry=$3
awk '/^```c$/{on=1; next} /^```$/{if(on) exit} on' "$src/README.md" > "$T/example.c"
[ -s "$T/example.c" ] && pass "README has a C example" || fail "no C example in README"
expect 0 "README example compiles" -- cc -std=c11 -Wall -Wextra -Werror -I"$src/include" \
  -o "$T/example" "$T/example.c" "$lib" -pthread
"$ferry" rm hello.counter 2>/dev/null
expect 0 "README example runs" -- "$T/example"
contains out "run 1"
"$ferry" rm hello.counter
finish
