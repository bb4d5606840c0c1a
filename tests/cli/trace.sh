#!/usr/bin/env bash
# ferry trace: every scenario's JSON timeline against the seed's order
# (trace_check.py), the pcap file read back by tshark, the SVG, --port mode
# against a server this test starts, and the fallback without capture
# privilege.
. "$(dirname "$0")/lib.sh"
ferry=$1
here=$(dirname "$0")
PY=/usr/bin/python3

for s in normal server-close refused abort half-close simultaneous-close backlog; do
  if "$ferry" trace --scenario $s --json >"$T/$s.jsonl" 2>"$T/$s.err" &&
     $PY "$here/trace_check.py" $s <"$T/$s.jsonl" >"$T/$s.chk"; then
    pass "trace $s: $(cat "$T/$s.chk")"
  else
    fail "trace $s"; cat "$T/$s.err" "$T/$s.chk" 2>/dev/null | sed 's/^/    /'
  fi
done

# the terminal diagram: lanes, the seed's step numbers, a state column
expect 0 "trace (diagram)" -- "$ferry" trace
contains out "client"
contains out "SYN|ACK"
contains out "TIME_WAIT"
grep -Eq '^ +[0-9.]+ +10 ' "$T/out" && pass "step 10 is labelled" || fail "no step 10 in the diagram"

# --pcap: the same segments, as tshark reads them
expect 0 "trace --pcap" -- "$ferry" trace --json --pcap "$T/t.pcap"
cp "$T/out" "$T/p.jsonl"
if command -v tshark >/dev/null; then
  tshark -r "$T/t.pcap" -T fields -e tcp.flags.str -e tcp.seq -e tcp.ack -e tcp.len 2>/dev/null >"$T/tshark.txt"
  n_json=$(grep -c '"type": "segment"' "$T/p.jsonl")
  n_pcap=$(grep -c . "$T/tshark.txt")
  [ "$n_json" -gt 0 ] && [ "$n_json" = "$n_pcap" ] && pass "tshark reads the $n_pcap segments of the trace" \
    || fail "tshark saw $n_pcap segments, the trace $n_json"
  # tshark's relative numbers and flags match the trace, segment by segment
  $PY - "$T/p.jsonl" "$T/tshark.txt" <<'PYEOF' && pass "seq/ack/len/flags agree with tshark" || fail "trace and tshark disagree"
import json, sys
segs = [json.loads(l) for l in open(sys.argv[1]) if '"segment"' in l]
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
names = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", "A": "ACK"}
for s, r in zip(segs, rows):
    fl = "|".join(names[c] for c in "SFRPA" if c in r[0].replace("\u00b7", ""))
    assert fl == s["flags"], (fl, s["flags"])
    assert int(r[1]) == s["seq"] and int(r[3]) == s["len"], (r, s)
    if "ACK" in s["flags"]:
        assert int(r[2]) == s["ack"], (r, s)
PYEOF
else
  fail "tshark is not installed (make test installs it)"
fi

# --svg
expect 0 "trace --svg" -- "$ferry" trace --scenario half-close --svg "$T/t.svg"
$PY -c "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); assert d.getElementsByTagName('line')" "$T/t.svg" \
  && pass "the SVG parses and has arrows" || fail "bad SVG"

# --port: another program's connections (here: ferry send/recv over tcp://)
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ferry" trace --port $port -n 1 --json >"$T/port.jsonl" 2>"$T/port.err" &
tp=$!
for _ in $(seq 1 200000); do grep -q watching "$T/port.err" && break; done  # said once it captures
"$ferry" recv --bind tcp://127.0.0.1:$port --type pull -n 1 --timeout 10000 >/dev/null &
rp=$!
# connect only once it listens (an earlier SYN would be refused, and that
# attempt would count as the one connection)
for _ in $(seq 1 20000); do ss -Hltn "sport = :$port" | grep -q . && break; done
"$ferry" send --connect tcp://127.0.0.1:$port --type push hello --timeout 10000 >/dev/null
wait $rp
wait $tp && pass "--port -n 1 ended after one connection" || fail "--port exit"
for f in '"flags": "SYN"' '"flags": "SYN|ACK"' 'FIN' '"state": "TIME_WAIT"'; do
  grep -q "$f" "$T/port.jsonl" && pass "--port saw $f" || { fail "--port lacks $f"; head -5 "$T/port.jsonl"; }
done

# no capture privilege: one line saying what is missing, then calls and states
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
  cp "$ferry" "$T/ferry-nopriv"; chmod 755 "$T" "$T/ferry-nopriv"
  setpriv --reuid 65534 --regid 65534 --clear-groups "$T/ferry-nopriv" trace --json >"$T/np.jsonl" 2>"$T/np.err"
  rc=$?
  [ $rc = 0 ] && pass "unprivileged trace exits 0" || fail "unprivileged trace exit $rc"
  [ "$(wc -l <"$T/np.err")" = 1 ] && grep -q "CAP_NET_RAW" "$T/np.err" && pass "one line says capture needs CAP_NET_RAW" \
    || { fail "unprivileged message"; cat "$T/np.err"; }
  grep -q '"type": "call_return"' "$T/np.jsonl" && grep -q '"type": "state"' "$T/np.jsonl" && \
    ! grep -q '"type": "segment"' "$T/np.jsonl" && pass "calls and states without segments" || fail "unprivileged output"
fi

expect 2 "unknown scenario" -- "$ferry" trace --scenario nope
one_line_error "unknown scenario"
expect 0 "trace --help" -- "$ferry" trace --help
contains out "usage: ferry trace"
finish
