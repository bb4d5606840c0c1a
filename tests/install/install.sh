#!/usr/bin/env bash
# cmake --install into a scratch prefix, then build a program against it
# twice: with pkg-config (shared library) and with find_package(ferry).
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in include/ferry.h lib/libferry.a lib/libferry.so lib/pkgconfig/ferry.pc \
         lib/cmake/ferry/ferryConfig.cmake bin/ferry; do
  [ -e "$tmp/prefix/$f" ] || { echo "missing after install: $f"; exit 1; }
done
# the man pages, when this build made them (scdoc found)
if [ -d "$build/man" ]; then
  for page in ferry ferry-send ferry-recv ferry-ls ferry-rm ferry-bench ferry-trace; do
    f=$tmp/prefix/share/man/man1/$page.1
    [ -s "$f" ] || { echo "missing after install: share/man/man1/$page.1"; exit 1; }
    man -l "$f" 2>/dev/null | grep -q "$page - " || { echo "man -l $f shows no NAME"; exit 1; }
  done
  echo "ok: the 7 man pages installed in share/man/man1"
fi

export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs ferry)
echo "pkg-config --cflags --libs ferry: $flags"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror -o "$tmp/hello" "$src/examples/hello.c" $flags
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/hello" t-install-$$

mkdir "$tmp/proj"
cat > "$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(ferry 0.1 REQUIRED)
add_executable(hello_static hello.c)
target_link_libraries(hello_static PRIVATE ferry::ferry_static)
add_executable(hello_shared hello.c)
target_link_libraries(hello_shared PRIVATE ferry::ferry)
CM
cp "$src/examples/hello.c" "$tmp/proj/"
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
"$tmp/proj/build/hello_static" t-install-$$
"$tmp/proj/build/hello_shared" t-install-$$
"$tmp/prefix/bin/ferry" rm t-install-$$
echo "ok: installed ferry found by pkg-config and find_package"
