#!/usr/bin/env bash
# The C examples in README.md compile and run as printed there.
. "$(dirname "$0")/lib.sh"
src=$1 lib=$2 ferry=$3
awk -v dir="$T" '/^```c$/{on=1; n++; next} /^```$/{on=0} on{print > (dir "/example" n ".c")}' "$src/README.md"
[ -s "$T/example1.c" ] && [ -s "$T/example2.c" ] && [ -s "$T/example3.c" ] \
  && pass "README has three whole C programs" || fail "C examples missing from README"
for i in 1 2 3; do
  expect 0 "README example $i compiles" -- cc -std=c11 -Wall -Wextra -Werror -I"$src/include" \
    -o "$T/example$i" "$T/example$i.c" "$lib" -pthread $(pkg-config --libs libsodium)
done
"$ferry" rm hello.counter 2>/dev/null
expect 0 "README example 1 runs" -- "$T/example1"
contains out "run 1"
"$ferry" rm hello.counter
expect 0 "README example 2 runs" -- "$T/example2"
contains out "hello"
expect 0 "README example 3 (CURVE PUB/SUB) runs" -- "$T/example3"
contains out "secret"
finish
