#!/usr/bin/python3
"""trace_check.py SCENARIO < events.jsonl - checks a `ferry trace --json`
timeline against the seed's account of set-up and teardown.

Each check names what must come before what; a failure prints the first
broken rule and exits 1. Only the standard library is used.
"""
import json
import sys


def main():
    scen = sys.argv[1]
    ev = [json.loads(line) for line in sys.stdin if line.strip()]
    for e in ev:  # the fields every event must have
        for k in ("t_ns", "lane", "type", "ferry_version", "schema"):
            assert k in e, "missing %s in %s" % (k, e)
        assert e["lane"] in ("client", "server", "wire"), e
        assert e["type"] in ("call_enter", "call_return", "segment", "state", "note"), e
    ts = [e["t_ns"] for e in ev]
    assert ts == sorted(ts), "events not sorted by t_ns"
    assert ts[0] == 0, "t_ns does not start at 0"

    def idx(pred, start=0, what=""):
        for i in range(start, len(ev)):
            if pred(ev[i]):
                return i
        raise AssertionError("not found: " + what)

    def seg(flags, d=None):
        return lambda e: (e["type"] == "segment" and e["flags"] == flags
                          and (d is None or e["dir"] == d))

    def call(lane, name, kind):
        return lambda e: e["type"] == kind and e["lane"] == lane and e.get("call") == name

    def state(lane, name):
        return lambda e: e["type"] == "state" and e["lane"] == lane and e["state"] == name

    def states(lane, src=None):
        return [e["state"] for e in ev if e["type"] == "state" and e["lane"] == lane
                and (src is None or e["source"] == src)]

    for e in ev:
        if e["type"] == "segment":
            for k in ("dir", "flags", "seq", "ack", "len"):
                assert k in e, "segment without " + k
        if e["type"] == "call_return":
            assert "ret" in e and "errno" in e, e
        if e["type"] == "state":
            assert "state" in e, e

    # every socket's states (lane and ports) only move forward in its life;
    # CLOSE counts as the start until another state was shown, then as the
    # end (a socket still held when TIME_WAIT begins reports CLOSE)
    rank = {"LISTEN": 0, "SYN_SENT": 1, "SYN_RECV": 1, "ESTABLISHED": 2, "FIN_WAIT1": 3,
            "CLOSE_WAIT": 3, "FIN_WAIT2": 4, "CLOSING": 4, "LAST_ACK": 4, "TIME_WAIT": 5}
    furthest = {}
    for e in ev:
        if e["type"] != "state" or e["state"] == "NONE":
            continue
        key = (e["lane"], e["lport"], e["rport"])
        r = rank.get(e["state"], 5 if key in furthest else 0)
        assert r >= furthest.get(key, -1), "%s %s:%s shows %s after a later state" % (
            e["lane"], e["lport"], e["rport"], e["state"])
        furthest[key] = max(r, furthest.get(key, -1))

    ce = idx(call("client", "connect", "call_enter"), what="connect entered")
    syn = idx(seg("SYN", "c2s"), what="SYN")
    assert ce < syn, "the SYN came before connect() was entered"
    assert ev[syn]["seq"] == 0, "relative seq of the SYN is not 0"

    if scen == "refused":
        rst = idx(lambda e: e["type"] == "segment" and "RST" in e["flags"], syn, "RST")
        cr = idx(call("client", "connect", "call_return"), what="connect returned")
        assert rst < cr, "connect() returned before the RST"
        assert ev[cr]["ret"] == -1 and ev[cr]["errno"] == 111, "connect() did not fail ECONNREFUSED"
        print("refused: SYN, RST, connect() = -1 ECONNREFUSED")
        return

    sa = idx(seg("SYN|ACK", "s2c"), syn, "SYN|ACK")
    ack = idx(seg("ACK", "c2s"), sa, "third ACK")
    cr = idx(call("client", "connect", "call_return"), what="connect returned")
    assert sa < cr, "connect() returned before the SYN|ACK"
    ae = idx(call("server", "accept", "call_enter"), what="accept entered")
    ar = idx(call("server", "accept", "call_return"), ae, "accept returned")
    assert ack < ar, "accept() returned before the client's ACK"
    if scen != "backlog":  # the classic order: the server waits in accept() first
        assert ae < ce, "accept() was entered after connect()"
        assert ev[ar]["t_ns"] > ev[ack]["t_ns"], "accept() did not span the handshake"
    lis = idx(call("server", "listen", "call_return"), what="listen")
    assert lis < syn, "SYN before listen()"
    assert ev[sa]["ack"] == 1, "SYN|ACK does not acknowledge seq 1"

    if scen == "backlog":
        syns = [e for e in ev if e["type"] == "segment" and e["flags"] == "SYN"]
        ports = set(e["sport"] for e in syns)
        assert len(ports) == 4, "expected 4 connections, saw %d" % len(ports)
        assert len(syns) > 4, "no SYN was retried: the backlog did not overflow"
        assert "SYN_SENT" in states("client", "tcp_info"), "no client seen waiting in SYN_SENT"
        accepts = [e for e in ev if e["type"] == "call_return" and e.get("call") == "accept"]
        assert len(accepts) == 4 and all(e["ret"] >= 0 for e in accepts), "not all accepted"
        print("backlog: %d SYNs for 4 connections, SYN_SENT seen, all accepted" % len(syns))
        return

    fins = [i for i, e in enumerate(ev) if e["type"] == "segment" and "FIN" in e["flags"]]
    rsts = [i for i, e in enumerate(ev) if e["type"] == "segment" and "RST" in e["flags"]]
    if scen == "abort":
        assert rsts and not fins, "abort: expected an RST and no FIN"
        sc = idx(call("server", "close", "call_enter"), what="server close")
        assert sc < rsts[0], "RST before the server's close()"
        rr = [e for e in ev if e["type"] == "call_return" and e["lane"] == "client"
              and e.get("call") == "recv"]
        assert rr and rr[-1]["ret"] == -1 and rr[-1]["errno"] == 104, \
            "the client's recv() did not fail with ECONNRESET"
        print("abort: close() with unread data sent RST, no FIN; recv() = ECONNRESET")
        return

    assert len(fins) == 2 and not rsts, "expected two FINs and no RST"
    first = ev[fins[0]]
    active = "client" if first["dir"] == "c2s" else "server"
    passive = "server" if active == "client" else "client"
    if scen in ("normal",):
        assert active == "client", "normal: the client should close first"
    if scen in ("server-close",):
        assert active == "server", "server-close: the server should close first"
    if scen == "half-close":
        sh = idx(call("client", "shutdown", "call_enter"), what="shutdown")
        assert sh < fins[0] and active == "client", "half-close: FIN not from shutdown()"
        data_after = [e for e in ev[fins[0]:] if e["type"] == "segment"
                      and e["dir"] == "s2c" and e["len"] > 0]
        assert data_after, "half-close: no data from the server after the client's FIN"
        got = [e for e in ev if e["type"] == "call_return" and e["lane"] == "client"
               and e.get("call") == "recv" and e["ret"] > 0]
        assert got, "half-close: the client did not read the reply after its FIN"
    if scen == "simultaneous-close":
        notes = [e["note"] for e in ev if e["type"] == "note"]
        assert notes, "simultaneous-close: no note"
        if "crossed" in notes[0] and "not" not in notes[0]:
            for lane in ("client", "server"):
                assert "CLOSING" in states(lane), lane + " did not pass CLOSING"
                assert "TIME_WAIT" in states(lane), lane + " did not reach TIME_WAIT"
            print("simultaneous-close: FINs crossed; both sides CLOSING then TIME_WAIT")
            return
        print("simultaneous-close: the FINs did not cross in 20 tries; checked as a normal close")
    closer_call = idx(lambda e: e["type"] == "call_enter" and e["lane"] == active
                      and e.get("call") in ("close", "shutdown"), what="first close")
    assert closer_call < fins[0], "the first FIN came before any close()"
    # the active closer: FIN_WAIT1, FIN_WAIT2, TIME_WAIT; the passive: CLOSE_WAIT, LAST_ACK
    a = states(active)
    p = states(passive)
    order = [s for s in a if s in ("FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT")]
    # In the scripted scenarios the passive side acknowledges the FIN before
    # it closes, so FIN_WAIT2 is always there. When two closes only nearly
    # coincide (simultaneous-close whose FINs did not cross), the second FIN
    # may carry that ACK itself and FIN_WAIT2 lasts no time at all.
    need = ("FIN_WAIT1", "TIME_WAIT") if scen == "simultaneous-close" else \
        ("FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT")
    for s in need:
        assert s in order, "%s (active closer) never in %s: %s" % (active, s, a)
    last_tw = len(order) - 1 - order[::-1].index("TIME_WAIT")
    assert order.index("FIN_WAIT1") < last_tw, "active closer states out of order: %s" % order
    if "FIN_WAIT2" in need:
        assert order.index("FIN_WAIT1") < order.index("FIN_WAIT2") < last_tw, \
            "active closer states out of order: %s" % order
    for s in ("CLOSE_WAIT", "LAST_ACK"):
        assert s in p, "%s (passive closer) never in %s: %s" % (passive, s, p)
    assert p.index("CLOSE_WAIT") < p.index("LAST_ACK"), "passive states out of order"
    # the kernel itself, not only the segments, showed the teardown states
    kernel = states(active, "tcp_info") + states(active, "sock_diag")
    assert "TIME_WAIT" in kernel, "the kernel never showed the active closer in TIME_WAIT"
    if scen != "simultaneous-close":  # there the passive side closes at once
        assert "CLOSE_WAIT" in states(passive, "tcp_info") + states(passive, "sock_diag"), \
            "the kernel never showed the passive closer in CLOSE_WAIT"
    print("%s: SYN after connect(), connect() after SYN|ACK, accept() after ACK; "
          "%s FIN_WAIT1 > FIN_WAIT2 > TIME_WAIT, %s CLOSE_WAIT > LAST_ACK" % (scen, active, passive))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("trace_check: " + str(e))
        sys.exit(1)
