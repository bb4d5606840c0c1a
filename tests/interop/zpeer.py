#!/usr/bin/python3
"""zpeer.py - the pyzmq side of the interoperability tests.

Plays the same roles as tests/interop/peer.c (see its header), with
Debian's python3-zmq (libzmq 4.3.4 underneath):

    zpeer.py ROLE bind|connect URL [COUNT]

Extra roles: push-parts (send PARTS, multipart messages for `ferry recv
--format json` to show), parts-check file PATH (PATH holds what ferry
printed: it must be PARTS, part for part), rep-die K (serve K requests, then SIGKILL itself: the test of
ferry's reconnect), and any role with the socket type forced by
ZPEER_TYPE (an incompatible peer for the refusal tests: it just sends).
"""
import os
import signal
import struct
import sys
import time

import zmq
import zmq.utils.monitor

BIG = 10 << 20


def pattern(length, seed):
    return bytes(((i * 7 + seed) & 0xFF) for i in range(length)) if length < 4096 else \
        bytes(((i * 7 + seed) & 0xFF) for i in range(256)) * (length // 256) + \
        bytes(((i * 7 + seed) & 0xFF) for i in range(length % 256))


def vector():
    v = [[b"hello"], [b"a", b"bb", b"ccc"], [b""]]
    specs = [[255], [256], [255, 256, 0], [BIG]]
    for n, lens in enumerate(specs, start=3):
        v.append([pattern(length, n * 16 + i) for i, length in enumerate(lens)])
    return v


# multipart messages with UTF-8, JSON escapes, tabs, empty parts, binary
PARTS = [[b"topic", "h\u00e9llo \u4e16\u754c".encode(), b""],
         [b'{"a":"b\\"c"}', b"tab\there", b"\x00\xff\xfe binary"],
         [b""], [bytes(range(256)), b"end"]]


def parts_check(path):
    import base64
    import json
    lines = open(path, "rb").read().decode("utf-8").splitlines()
    got = [[p.encode() if isinstance(p, str) else base64.b64decode(p["base64"])
            for p in json.loads(line)["parts"]] for line in lines]
    if got != PARTS:
        fail("ferry recv --format json printed %r, wanted %r" % (got, PARTS))
    return 0


TYPES = {"push-parts": zmq.PUSH, "rep": zmq.REP, "req": zmq.REQ, "pair-echo": zmq.PAIR, "pair-req": zmq.PAIR,
         "push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.PUB, "sub": zmq.SUB,
         "rep-die": zmq.REP, "sender": zmq.PUSH, "dealer": zmq.DEALER, "dealer-req": zmq.DEALER,
         "router-echo": zmq.ROUTER, "router-mandatory": zmq.ROUTER, "dealer-bye": zmq.DEALER,
         "sub-welcome": zmq.SUB, "curve-denied": zmq.PUSH, "curve-fails": zmq.PUSH}


def router_mandatory(s):
    """ROUTER_MANDATORY: a message to a peer that left fails with
    EHOSTUNREACH (tried until its departure is seen, at most 10 s)."""
    s.setsockopt(zmq.ROUTER_MANDATORY, 1)
    rid, body = s.recv_multipart()
    if body != b"bye":
        fail("wanted the dealer's b'bye', got %r" % body)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            s.send_multipart([rid, b"late"], zmq.NOBLOCK)
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                return 0
        time.sleep(0.02)  # polling for the peer's departure
    fail("a message to the departed dealer never failed with EHOSTUNREACH")


def curve_setup(s):
    """CURVE from the environment, as peer.c reads it (keys in Z85)."""
    if os.environ.get("CURVE_SERVER"):
        s.curve_server = True
        s.curve_secretkey = os.environ["CURVE_SERVER"].encode()
    elif os.environ.get("CURVE_CLIENT"):
        secret = os.environ["CURVE_CLIENT"].encode()
        s.curve_secretkey = secret
        s.curve_publickey = zmq.curve_public(secret)
        s.curve_serverkey = os.environ["CURVE_SERVERKEY"].encode()


def curve_denied(mon, want):
    """Waits for the handshake to fail as `want` says ("auth": the server's
    ERROR 400; "any": any failure or a disconnect) before any success; mon
    was attached before the connect (libzmq does not retry after ERROR)."""
    deadline = time.time() + 15
    while time.time() < deadline:
        if not mon.poll(1000):
            continue
        ev = zmq.utils.monitor.recv_monitor_message(mon)
        kind = ev["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            fail("the CURVE handshake succeeded")
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH and ev["value"] == 400:
            return 0
        if want == "any" and kind in (zmq.EVENT_DISCONNECTED,
                                      zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                      zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            return 0
    fail("no handshake failure seen")


def fail(why):
    sys.stderr.write("zpeer[%d]: %s\n" % (os.getpid(), why))
    sys.exit(1)


def main():
    role, mode, url = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    if role == "parts-check":
        return parts_check(url)
    vec = vector()
    ctx = zmq.Context()
    stype = TYPES[role]
    if os.environ.get("ZPEER_TYPE"):
        stype = getattr(zmq, os.environ["ZPEER_TYPE"])
    s = ctx.socket(stype)
    curve_setup(s)
    if os.environ.get("ROUTING_ID"):
        s.setsockopt(zmq.ROUTING_ID, os.environ["ROUTING_ID"].encode())
    s.RCVTIMEO = 10000
    s.SNDTIMEO = 10000
    s.LINGER = 2000
    if role == "sub-welcome":  # before connecting: the welcome is sent on connect
        s.subscribe(b"W")
    mon = s.get_monitor_socket() if role.startswith("curve-") else None
    if mode == "bind":
        s.bind(url)
        print("ENDPOINT", s.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    else:
        s.connect(url)
    rc = 0
    if role in ("rep", "pair-echo"):
        for _ in range(count if count >= 0 else len(vec)):
            s.send_multipart(s.recv_multipart())
    elif role == "router-echo":
        expect = os.environ.get("EXPECT_RID")
        for i in range(count if count >= 0 else len(vec)):
            m = s.recv_multipart()
            if len(m) < 2 or (expect and m[0] != expect.encode()):
                fail("message %d lacks the expected routing id (%r)" % (i, m[:1]))
            s.send_multipart(m)
    elif role == "push-parts":
        for m in PARTS:
            s.send_multipart(m)
    elif role == "rep-die":
        for _ in range(count):
            s.send_multipart(s.recv_multipart())
        os.kill(os.getpid(), signal.SIGKILL)
    elif role in ("req", "pair-req", "dealer"):
        for i, m in enumerate(vec):
            s.send_multipart(m)
            if s.recv_multipart() != m:
                fail("reply %d differs from the request" % i)
    elif role == "dealer-req":  # REQ's envelope framed by hand, for a REP
        for i, m in enumerate(vec):
            s.send_multipart([b""] + m)
            if s.recv_multipart() != [b""] + m:
                fail("reply %d differs from the request (or lacks the delimiter)" % i)
    elif role == "push":
        for m in vec:
            s.send_multipart(m)
        for k in range(max(count, 0)):
            s.send(b"seq" + struct.pack(">Q", k))
    elif role == "pull":
        for i, m in enumerate(vec):
            if s.recv_multipart() != m:
                fail("message %d differs" % i)
        for k in range(max(count, 0)):
            if s.recv() != b"seq" + struct.pack(">Q", k):
                fail("sequence message %d wrong (lost, duplicated or reordered)" % k)
    elif role == "pub":
        for _ in range(3000):
            for i, m in enumerate(vec):
                s.send_multipart([b"A" + bytes([i])] + m)
                s.send(b"B-noise")
            time.sleep(0.01)  # pacing only
    elif role == "sub":
        s.subscribe(b"A")
        seen = set()
        while len(seen) < len(vec):
            m = s.recv_multipart()
            if len(m[0]) != 2 or m[0][:1] != b"A" or m[0][1] >= len(vec):
                fail("unexpected message (filter broken?)")
            i = m[0][1]
            if m[1:] != vec[i]:
                fail("published message %d differs" % i)
            seen.add(i)
    elif role == "dealer-bye":  # one message to a ROUTER, then gone
        s.send(b"bye")
    elif role == "router-mandatory":
        rc = router_mandatory(s)
    elif role == "sub-welcome":  # an XPUB's welcome, then what it publishes
        if s.recv() != b"W":
            fail("the first message is not the XPUB's welcome")
        if s.recv() != b"Wlast":
            fail("the published message after the welcome is wrong")
    elif role in ("curve-denied", "curve-fails"):
        rc = curve_denied(mon, "auth" if role == "curve-denied" else "any")
        s.disable_monitor()
        mon.close()  # or ctx.term() waits for it
    elif role == "sender":
        # an incompatible peer: it may never get through; send and linger
        try:
            s.send(b"must not arrive", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # no peer to take it (Again), or a REP that may not send first
        time.sleep(count / 1000.0 if count > 0 else 2.0)  # stay connected for the check
    s.close()
    ctx.term()
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except zmq.Again:
        fail("timed out")
