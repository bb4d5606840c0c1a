#!/usr/bin/python3
"""proxy.py - `ferry proxy` between pyzmq (libzmq 4.3.4) on tcp:// and ferry
processes on shm://, the two scenarios the proxy is for:

  1. a forwarder: a pyzmq publisher on tcp:// -> ferry proxy (XSUB on
     tcp://, XPUB on shm://) -> 8 `ferry recv --type sub` processes on
     shm://, each with its own prefix. Their subscriptions travel up through
     the proxy to the publisher, which is a pyzmq XPUB so that the test
     knows when all 8 have arrived (it filters exactly as a PUB does). Each
     subscriber gets exactly its topic, in order; messages of a topic nobody
     wants are never sent (the proxy's statistics, printed on SIGUSR1, count
     only the wanted ones coming in).
  2. a broker: pyzmq REQ clients on tcp:// -> ferry proxy (ROUTER on
     tcp://, DEALER on shm://) -> 3 `ferry recv --type rep` workers on
     shm:// that echo: every request is answered once, to its client.

Both proxies stop on SIGINT with exit 0.

    proxy.py FERRY_CLI
"""
import os
import re
import signal
import socket
import subprocess
import sys

import zmq

TOPICS = 8
PER_TOPIC = 100


def fail(why):
    print("proxy: " + why, file=sys.stderr)
    sys.exit(1)


def free_tcp():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "tcp://127.0.0.1:%d" % port


def stop_proxy(p, what):
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        fail("%s: the proxy did not stop on SIGINT" % what)
    if p.returncode != 0:
        fail("%s: the proxy exited %d: %r" % (what, p.returncode, err))
    return err.decode()


def forwarder(cli, ctx):
    up = free_tcp()
    down = "shm://t-proxy-fwd-%d" % os.getpid()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(up)
    proxy = subprocess.Popen([cli, "proxy", "--type", "xsub-xpub", "--frontend-connect", up,
                              "--backend", down], stderr=subprocess.PIPE)
    subs = []
    for t in range(TOPICS):
        subs.append(subprocess.Popen(
            [cli, "recv", "--connect", down, "--type", "sub", "--subscribe", "t%d" % t,
             "--format", "quoted", "-n", str(PER_TOPIC), "--timeout", "20000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    # every subscription reaches the publisher through the proxy
    want = set(b"\x01t%d" % t for t in range(TOPICS))
    pub.setsockopt(zmq.RCVTIMEO, 20000)
    while want:
        try:
            m = pub.recv()
        except zmq.Again:
            for s in subs:
                s.kill()
            proxy.kill()
            fail("forwarder: subscriptions still missing upstream: %r" % sorted(want))
        want.discard(m)
    for i in range(PER_TOPIC):
        for t in range(TOPICS):
            pub.send(b"t%d %d" % (t, i))
        pub.send(b"zz nobody wants %d" % i)  # filtered by the publisher
    for t, s in enumerate(subs):
        try:
            out, err = s.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            s.kill()
            proxy.kill()
            fail("forwarder: subscriber t%d did not get its %d messages" % (t, PER_TOPIC))
        lines = out.decode().splitlines()
        expect = ['"t%d %d"' % (t, i) for i in range(PER_TOPIC)]
        if s.returncode != 0 or lines != expect:
            proxy.kill()
            fail("forwarder: subscriber t%d exit %d, got %d lines (first %r), stderr %r"
                 % (t, s.returncode, len(lines), lines[:2], err))
    proxy.send_signal(signal.SIGUSR1)
    err = proxy.stderr.readline().decode()  # the statistics, before we stop it
    stop_proxy(proxy, "forwarder")
    m = re.search(r"frontend received (\d+) messages", err)
    if not m or int(m.group(1)) != TOPICS * PER_TOPIC:
        fail("forwarder: the proxy's statistics %r: wanted %d messages in (only the "
             "subscribed topics)" % (err, TOPICS * PER_TOPIC))
    pub.close()
    print("ok   - forwarder: pyzmq XPUB/tcp -> ferry proxy -> %d SUBs on shm://, %d each, "
          "filtered upstream" % (TOPICS, PER_TOPIC))


def broker(cli, ctx):
    front = free_tcp()
    back = "shm://t-proxy-brk-%d" % os.getpid()
    proxy = subprocess.Popen([cli, "proxy", "--type", "router-dealer", "--frontend", front,
                              "--backend", back], stderr=subprocess.PIPE)
    workers = [subprocess.Popen([cli, "recv", "--connect", back, "--type", "rep",
                                 "--format", "quoted"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(3)]
    clients = []
    for c in range(4):
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.RCVTIMEO, 20000)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(front)
        clients.append(req)
    answered = 0
    for i in range(50):
        for c, req in enumerate(clients):
            body = b"client %d request %d" % (c, i)
            req.send(body)
        for c, req in enumerate(clients):
            body = b"client %d request %d" % (c, i)
            try:
                got = req.recv()
            except zmq.Again:
                proxy.kill()
                for w in workers:
                    w.kill()
                fail("broker: client %d got no answer to request %d" % (c, i))
            if got != body:
                fail("broker: client %d got %r for %r" % (c, got, body))
            answered += 1
    for req in clients:
        req.close()
    for w in workers:
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=20)
        if w.returncode != 0:
            fail("broker: a worker exited %d" % w.returncode)
    stop_proxy(proxy, "broker")
    if answered != 200:
        fail("broker: %d of 200 answered" % answered)
    print("ok   - broker: 4 pyzmq REQ/tcp -> ferry proxy -> 3 ferry REP on shm://, "
          "200 requests answered once each")


def main():
    cli = sys.argv[1]
    ctx = zmq.Context()
    forwarder(cli, ctx)
    broker(cli, ctx)
    ctx.term()


if __name__ == "__main__":
    main()
