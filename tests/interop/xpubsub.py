#!/usr/bin/python3
"""xpubsub.py - XPUB and XSUB against pyzmq (libzmq 4.3.4), through the
`ferry` CLI, over tcp:// and ipc://:

  1. a pyzmq SUB subscribes to "A", then cancels: `ferry recv --type xpub`
     prints the two notices, \\x01A and \\x00A (libzmq sends 3.1 commands);
  2. `ferry recv --type xsub --subscribe T` against a pyzmq XPUB: the XPUB
     receives \\x01T from ferry, publishes U1 then T1, and ferry prints T1
     only (the XPUB filtered on ferry's subscription);
  3. a pyzmq XSUB sends \\x01K to `ferry recv --type xpub`, which prints it.

    xpubsub.py FERRY_CLI
"""
import os
import subprocess
import sys
import tempfile

import zmq


def fail(why):
    print("xpubsub: " + why, file=sys.stderr)
    sys.exit(1)


def ferry_recv(cli, args, n):
    return subprocess.Popen([cli, "recv", "--format", "quoted", "-n", str(n), "--timeout", "10000"]
                            + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p, want, what):
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        fail("%s: ferry recv did not finish" % what)
    if p.returncode != 0 or out.decode() != want:
        fail("%s: ferry recv exit %d printed %r (stderr %r), wanted %r"
             % (what, p.returncode, out, err, want))


def free_tcp(ctx):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "tcp://127.0.0.1:%d" % port


def case_notices(ctx, cli, url):
    p = ferry_recv(cli, ["--bind", url, "--type", "xpub"], 2)
    sub = ctx.socket(zmq.SUB)
    sub.connect(url)
    sub.setsockopt(zmq.SUBSCRIBE, b"A")
    line = p.stdout.readline()  # ferry flushes each message as it comes
    if line != b'"\\x01A"\n':
        p.kill()
        fail("xpub notices over %s: first line %r, wanted the subscribe" % (url, line))
    sub.setsockopt(zmq.SUBSCRIBE, b"A")  # a repeat: no second notice
    sub.setsockopt(zmq.UNSUBSCRIBE, b"A")
    sub.setsockopt(zmq.UNSUBSCRIBE, b"A")  # the last cancel: the notice
    finish(p, '"\\x00A"\n', "xpub notices over " + url)
    sub.close(0)


def case_xsub(ctx, cli, url):
    xpub = ctx.socket(zmq.XPUB)
    xpub.bind(url)
    p = ferry_recv(cli, ["--connect", url, "--type", "xsub", "--subscribe", "T"], 1)
    if not xpub.poll(10000):
        fail("xsub over %s: no subscription reached the pyzmq XPUB" % url)
    got = xpub.recv()
    if got != b"\x01T":
        fail("xsub over %s: the pyzmq XPUB got %r, wanted b'\\x01T'" % (url, got))
    xpub.send(b"U1")
    xpub.send(b"T1")
    finish(p, '"T1"\n', "xsub over " + url)
    xpub.close(0)


def case_xsub_to_ferry(ctx, cli, url):
    p = ferry_recv(cli, ["--bind", url, "--type", "xpub"], 1)
    xsub = ctx.socket(zmq.XSUB)
    xsub.connect(url)
    xsub.send(b"\x01K")
    finish(p, '"\\x01K"\n', "pyzmq xsub to ferry xpub over " + url)
    xsub.close(0)


def main():
    cli = sys.argv[1]
    ctx = zmq.Context()
    tmp = tempfile.mkdtemp(prefix="ferry-xps-")
    n = 0
    for k, case in enumerate([case_notices, case_xsub, case_xsub_to_ferry]):
        for url in [free_tcp(ctx), "ipc://%s/x%d.sock" % (tmp, k)]:
            case(ctx, cli, url)
            n += 1
    ctx.term()
    print("xpubsub: %d cases passed" % n)


if __name__ == "__main__":
    main()
