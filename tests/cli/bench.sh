#!/usr/bin/env bash
# `ferry bench --quick` runs and writes well-formed JSON. A smoke test:
# it checks that the run works, never a speed threshold.
. "$(dirname "$0")/lib.sh"
ferry=$1
expect 0 "bench --help" -- "$ferry" bench --help
contains out "usage: ferry bench"
expect 2 "unknown suite" -- "$ferry" bench nosuch
one_line_error "unknown suite"
expect 2 "bad size" -- "$ferry" bench --size 0
expect 0 "bench --quick" -- "$ferry" bench --quick --reps 1 --json "$T/b.json" --plot "$T/b.svg"
contains out "limit: cache-line ping-pong"
contains out "ferry shm: REQ/REP 64 B, busy-polling"
python3 - "$T/b.json" <<'PY' && pass "JSON is well formed and complete" || fail "JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == 1 and d["ferry_version"]
m = d["machine"]; assert m["cores"] >= 1 and m["cpu"] and m["kernel"]
rs = d["results"]
systems = {r["system"] for r in rs}
assert {"limit", "raw", "ferry"} <= systems, systems
for r in rs:
    for k in ("system", "transport", "pattern", "size", "metric", "reps", "spread"):
        assert k in r, (k, r)
    if r["metric"] == "latency_ns":
        assert r["latency"] in ("one_way", "round_trip")
        assert 0 < r["p50"] <= r["p99"] <= r["p999"] <= r["max"] * 1.05, r
    else:
        assert r["value"] > 0, r
    if r["system"] == "ferry" and r["transport"] == "shm":
        assert r["wait"] in ("spin", "sleep", "adaptive"), r
    if r["pattern"] == "pubsub":
        assert r["subscribers"] in (1, 4, 16) and 0 <= r["dropped_ratio"] <= 1, r
    assert r["system"] in ("ferry", "raw", "limit", "libzmq", "nng"), r
    assert r["metric"] in ("latency_ns", "msgs_per_s", "bytes_per_s", "cpu_ns_per_msg"), r
    if r["metric"] == "msgs_per_s":
        assert abs(r["bytes_per_s"] - r["value"] * r["size"]) <= 1 + 1e-4 * r["bytes_per_s"], r
have = {(r["system"], r["transport"], r["pattern"]) for r in rs}
for t in ("ipc", "tcp"):  # ferry on both socket transports, with its peers when installed
    assert ("ferry", t, "reqrep") in have and ("ferry", t, "pushpull") in have, t
import ctypes.util
if ctypes.util.find_library("zmq"):
    assert ("libzmq", "tcp", "pushpull") in have and ("libzmq", "inproc", "reqrep") in have
if ctypes.util.find_library("nng"):
    assert ("nng", "ipc", "reqrep") in have
assert ("raw", "tcp", "stream") in have and ("raw", "pipe", "stream") in have
# latency rows against their baseline, measured pair by pair in the same run
lat = [r for r in rs if r["system"] == "ferry" and r["pattern"] == "reqrep" and r["transport"] in ("shm", "ipc", "tcp")]
want = {("shm", "limit"), ("shm", "pipe"), ("ipc", "unix"), ("tcp", "tcp")}
assert want <= {(r["transport"], r.get("baseline")) for r in lat}, lat
for r in lat:
    assert r["interleaved"] and r["ratio_p50"] > 0 and r["ratio_p99"] > 0 and r["baseline_p50"] > 0, r
    assert abs(r["ratio_p50"] * r["baseline_p50"] - r["p50"]) < 0.6 * r["p50"], r  # medians of pairs: near, not equal
assert any(r.get("ring_prefault") for r in lat), "the prefaulted busy-polling row"
for t in ("shm", "ipc", "tcp"):  # the router suite: DEALER/ROUTER against REQ/REP, the fan-in
    dr = [r for r in rs if (r["system"], r["transport"], r["pattern"]) == ("ferry", t, "dealer_router")]
    assert dr and dr[0]["ratio"] > 0 and dr[0]["baseline_reqrep_p50"] > 0, t
    fi = [r for r in rs if (r["system"], r["transport"], r["pattern"]) == ("ferry", t, "router_fanin")]
    assert fi and fi[0]["clients"] == 16 and fi[0]["value"] > 0, t
px = {r["pattern"]: r for r in rs if r["pattern"].startswith("proxy_") or r["pattern"] == "pubsub_direct"}
assert px["proxy_fanout"]["subscribers"] == 8 and px["proxy_fanout"]["ratio"] > 0, px
assert px["proxy_fanout"]["publisher_cpu_ns_per_msg"] > 0 and px["pubsub_direct"]["value"] > 0, px
assert px["proxy_pub_cpu"]["ratio"] > 0 and px["proxy_pushpull"]["baseline_direct"] > 0, px
if ctypes.util.find_library("zmq"):  # ferry_proxy's chain against zmq_proxy's, over tcp
    ch = [r for r in rs if r["pattern"] == "proxy_chain"]
    assert {r["system"] for r in ch} == {"ferry", "libzmq"} and all(r["value"] > 0 for r in ch), ch
    assert [r for r in ch if r["system"] == "ferry"][0]["baseline_libzmq"] > 0, ch
for t in ("shm", "tcp"):  # the poller suite: 1,000 idle sockets against none
    pi = [r for r in rs if (r["system"], r["transport"], r["pattern"]) == ("ferry", t, "poller_idle")]
    assert pi and pi[0]["ratio"] > 0 and pi[0]["baseline_alone_p50"] > 0, t
    assert pi[0]["idle_sockets"] == 1000, t
bc = [r for r in rs if r["pattern"] in ("pubsub_copy", "pubsub_pool")]  # the bcast suite
assert {(r["pattern"], r["size"], r["subscribers"]) for r in bc} == {
    (p, z, n) for p in ("pubsub_copy", "pubsub_pool") for z in (65536, 1048576) for n in (1, 4, 8, 16)}, bc
for r in bc:
    assert r["publisher_cpu_ns_per_msg"] > 0 and r["cpu_ratio_vs_1_subscriber"] > 0, r
    if r["pattern"] == "pubsub_pool":
        assert r["baseline_copies_cpu_ns"] > 0 and r["cpu_ratio_vs_copies"] > 0, r
PY
python3 -c "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); assert d.getElementsByTagName('polyline')" "$T/b.svg" \
  && pass "--plot wrote an SVG with throughput lines" || fail "--plot SVG"
finish
