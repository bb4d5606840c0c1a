#!/usr/bin/env bash
# man.sh MANDIR FERRY SCDOC: the built man pages (man/*.scd through scdoc):
# each exists, renders with groff without a warning, shows its NAME with
# `man -l`, and names every long option its command's --help lists.
. "$(dirname "$0")/lib.sh"
dir=$1 ferry=$2 scdoc=${3:-}
if [ -z "$scdoc" ] || [ "$scdoc" = SCDOC-NOTFOUND ]; then
  echo "scdoc is not installed: the man pages were not built (skipped)"
  exit 77
fi
for page in ferry ferry-send ferry-recv ferry-ls ferry-rm ferry-stat ferry-bench ferry-trace ferry-proxy \
  ferry-keygen; do
  f=$dir/$page.1
  [ -s "$f" ] && pass "$page.1 was built" || { fail "$page.1 missing"; continue; }
  if groff -k -man -Tutf8 -ww -z "$f" 2>"$T/groff.err" && [ ! -s "$T/groff.err" ]; then
    pass "$page.1 renders without a warning"
  else
    fail "$page.1: groff says"; cat "$T/groff.err"
  fi
  MANWIDTH=80 man -l "$f" >"$T/man.out" 2>"$T/man.err"
  grep -q "^NAME" "$T/man.out" && grep -q "$page - " "$T/man.out" && pass "man -l $page.1 shows its NAME" \
    || { fail "man -l $page.1"; head -5 "$T/man.out" "$T/man.err"; }
  if [ "$page" = ferry ]; then # its options, and every command of the table
    printf -- '--help --version\n' >"$T/help"
    for cmd in $("$ferry" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1}'); do
      grep -q "^ *$cmd\$" "$T/man.out" || fail "ferry.1 does not list the command $cmd"
    done
  else
    "$ferry" "${page#ferry-}" --help >"$T/help"
  fi
  for opt in $(grep -o -- '--[a-z][a-z-]*' "$T/help" | sort -u); do
    grep -q -- "$opt" "$T/man.out" || fail "$page.1 does not document $opt"
  done
  pass "$page.1 documents every option of its --help"
done
finish
