#!/bin/bash
# run.sh SECONDS [WORKDIR] - builds the libFuzzer targets with clang
# (ASan+UBSan): the ZMTP decoder's, with its seed corpus of valid and broken
# streams (make_corpus.c), and the CURVE codec's (curve_fuzz.c, seeded with
# one input per mode); fuzzes each for SECONDS. `make test` runs it briefly;
# `make fuzz` runs it longer. New inputs found are kept in WORKDIR/corpus,
# and a crash leaves its input in WORKDIR (libFuzzer prints the path).
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$here/build-fuzz}
mkdir -p "$work/corpus" "$work/curve-corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
    -std=c11 -I"$here/include" -I"$here/src" "$here/fuzz/zmtp_fuzz.c" \
    "$here/src/transport/zmtp/zmtp.c" -o "$work/zmtp_fuzz"
cc -D_GNU_SOURCE -std=c11 -Wall -Wextra -Werror -I"$here/include" -I"$here/src" \
    "$here/fuzz/make_corpus.c" "$here/src/transport/zmtp/zmtp.c" -o "$work/make_corpus"
"$work/make_corpus" "$work/corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
    -std=c11 -I"$here/include" -I"$here/src" "$here/fuzz/curve_fuzz.c" \
    "$here/src/transport/zmtp/curve.c" "$here/src/transport/zmtp/zmtp.c" \
    $(pkg-config --cflags --libs libsodium) -o "$work/curve_fuzz"
for mode in 0 1 2 3 4 5; do # a mode octet, then zeros (mode 5: a real handshake, unmasked)
    head -c 600 /dev/zero | { printf "\\$(printf %o $mode)"; cat; } >"$work/curve-corpus/seed-$mode"
done
cd "$work"
echo "zmtp_fuzz:"
./zmtp_fuzz -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    corpus 2>&1 | tail -15
echo "curve_fuzz:"
./curve_fuzz -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    curve-corpus 2>&1 | tail -15
