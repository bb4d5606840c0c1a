#!/bin/bash
# run.sh SECONDS [WORKDIR] - builds the ZMTP decoder's libFuzzer target with
# clang (ASan+UBSan), writes the seed corpus of valid and broken streams
# (make_corpus.c), and fuzzes for SECONDS. `make test` runs it briefly;
# `make fuzz` runs it longer. New inputs found are kept in WORKDIR/corpus,
# and a crash leaves its input in WORKDIR (libFuzzer prints the path).
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$here/build-fuzz}
mkdir -p "$work/corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
    -std=c11 -I"$here/include" -I"$here/src" "$here/fuzz/zmtp_fuzz.c" \
    "$here/src/transport/zmtp/zmtp.c" -o "$work/zmtp_fuzz"
cc -D_GNU_SOURCE -std=c11 -Wall -Wextra -Werror -I"$here/include" -I"$here/src" \
    "$here/fuzz/make_corpus.c" "$here/src/transport/zmtp/zmtp.c" -o "$work/make_corpus"
"$work/make_corpus" "$work/corpus"
cd "$work"
./zmtp_fuzz -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    corpus 2>&1 | tail -15
