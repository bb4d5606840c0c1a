#!/usr/bin/env bash
# The README example counts its runs in a shared region.
. "$(dirname "$0")/lib.sh"
hello=$1 ferry=$2 n=t-hello-$$
expect 0 "first run" -- "$hello" $n
contains out "run 1"
expect 0 "second run" -- "$hello" $n
contains out "run 2"
expect 0 "cleanup" -- "$ferry" rm $n
finish
