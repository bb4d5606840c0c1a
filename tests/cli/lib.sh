# lib.sh - helpers for the CLI tests (sourced). Each check prints one line;
# the script exits non-zero at the first failure.
set -uo pipefail
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
# expect CODE DESCRIPTION -- command...: runs it, checks its exit code.
expect() {
  local want=$1 what=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"; local got=$?
  if [ "$got" = "$want" ]; then pass "$what (exit $got)"; else
    fail "$what: exit $got, wanted $want"; sed 's/^/    stdout: /' "$T/out"; sed 's/^/    stderr: /' "$T/err"; fi
}
# The error contract: exactly one line on stderr, starting "ferry: ".
one_line_error() {
  local n; n=$(wc -l <"$T/err")
  if [ "$n" = 1 ] && grep -q '^ferry: ' "$T/err"; then pass "$1: one-line error: $(cat "$T/err")"
  else fail "$1: stderr should be one 'ferry: ' line, got:"; cat "$T/err"; fi
}
contains() { if grep -q -- "$2" "$T/$1"; then pass "$1 has '$2'"; else fail "$1 lacks '$2'"; sed 's/^/    /' "$T/$1"; fi; }
lacks() { if grep -q -- "$2" "$T/$1"; then fail "$1 has '$2'"; sed 's/^/    /' "$T/$1"; else pass "$1 lacks '$2'"; fi; }
finish() { if [ "$fails" = 0 ]; then echo "all passed"; exit 0; else echo "$fails failed"; exit 1; fi; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
