#!/usr/bin/env bash
# The shared library exports ferry_* and nothing else.
set -euo pipefail
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^ferry_' || true)
if [ -n "$bad" ]; then
  echo "symbols exported without the ferry_ prefix:"; printf '%s\n' "$bad"; exit 1
fi
echo "ok: $(printf '%s\n' "$syms" | wc -l) symbols, all ferry_*"
