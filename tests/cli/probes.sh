#!/usr/bin/env bash
# The bench probes (bench/fan_probe.c, bench/chain_probe.c) refuse bad
# arguments with their usage and exit 2, and a small run of each works. A
# smoke test: it checks that they run, never a speed.
. "$(dirname "$0")/lib.sh"
fan=$1 chain=$2
for bad in "" "bogus" "proxy 8x" "proxy 0" "proxy 65" "direct 8 999" "proxy 8 1000 4095" \
    "proxy 8 1000 4096 0 extra" "proxy 8 1000 4096 -1" "proxy 8 1000 4096 1e5" "proxy 99999999999999999999"; do
  # shellcheck disable=SC2086 # the words are the arguments
  expect 2 "fan probe refuses '$bad'" -- "$fan" $bad
  contains err "usage: ferry_fan_probe"
done
for bad in "" "bogus" "proxy 999" "loop 1e6" "proxy 1000 extra"; do
  # shellcheck disable=SC2086
  expect 2 "chain probe refuses '$bad'" -- "$chain" $bad
  contains err "usage: ferry_chain_probe"
done
expect 0 "fan probe through the proxy, 2 subscribers" -- "$fan" proxy 2 2000 65536
contains out "proxy, 2 subscribers: mean"
expect 0 "fan probe direct, 2 subscribers" -- "$fan" direct 2 2000
contains out "direct, 2 subscribers: mean"
contains out "publisher: "
expect 0 "fan probe through the proxy at 100,000 a second" -- "$fan" proxy 2 2000 65536 100000
contains out "proxy: "
expect 0 "chain probe, ferry_proxy" -- "$chain" proxy 2000
contains out "ferry_proxy: 2000 messages"
expect 0 "chain probe, plain loop" -- "$chain" loop 2000
contains out "loop: 2000 messages"
finish
