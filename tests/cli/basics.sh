#!/usr/bin/env bash
# The CLI contract: --help everywhere, --version, exit codes, one-line errors.
. "$(dirname "$0")/lib.sh"
ferry=$1

expect 0 "ferry --help" -- "$ferry" --help
contains out "usage: ferry"
expect 0 "ferry --version" -- "$ferry" --version
contains out "ferry [0-9]"
expect 2 "no command" -- "$ferry"
expect 2 "unknown command" -- "$ferry" frobnicate
one_line_error "unknown command"
for cmd in ls rm; do
  expect 0 "ferry $cmd --help" -- "$ferry" $cmd --help
  contains out "usage: ferry $cmd"
  expect 0 "ferry $cmd -h" -- "$ferry" $cmd -h
  expect 2 "ferry $cmd --bogus" -- "$ferry" $cmd --bogus
  one_line_error "$cmd --bogus"
done
expect 2 "ls with an argument" -- "$ferry" ls extra
one_line_error "ls extra"
expect 2 "rm without a name" -- "$ferry" rm
one_line_error "rm"
expect 2 "rm bad name with slash" -- "$ferry" rm ../etc/passwd
one_line_error "rm ../etc/passwd"
expect 2 "rm empty name" -- "$ferry" rm ""
expect 2 "rm name with newline" -- "$ferry" rm $'a\nb'
expect 2 "rm --stale with a name" -- "$ferry" rm --stale x
expect 1 "rm missing object" -- "$ferry" rm t-no-such-object-$$
one_line_error "rm missing"
contains err "no such object"
finish
