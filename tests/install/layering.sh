#!/usr/bin/env bash
# The architecture's rules, checked on the tree (docs/architecture.md,
# "The three layers"): the core and the transports know no socket pattern,
# the primitives know no transport, no hand-written extern prototypes in .c
# files, no include reaches up a layer; and one event loop: only
# src/core/loop.c starts I/O threads and waits in epoll (and the user's
# poller, src/core/poller.c, in an epoll set of its own, in the caller's
# thread: it serves no transport), and only the
# core's fy_sock_wait sleeps on a socket's wake word (the semaphore
# primitive sleeps on its own).
set -u
top=${1:-$(dirname "$0")/../..}
cd "$top" || exit 1
fail=0
say() { echo "layering: $*" >&2; fail=1; }

types='FERRY_(PAIR|PUB|SUB|REQ|REP|PUSH|PULL|DEALER|ROUTER|XPUB|XSUB)\b'
if hits=$(grep -rnE "$types" src/core src/transport); then
    say "a socket type named in the core or a transport:"; echo "$hits" >&2
fi
if hits=$(grep -rnE '^\s*extern\s' src --include='*.c'); then
    say "an extern declaration in a .c file (declare it in a header):"; echo "$hits" >&2
fi
if hits=$(grep -rnE '#include\s+"[^"]*(transport|proto)/' src/prim); then
    say "the primitives include a transport or a pattern:"; echo "$hits" >&2
fi
if hits=$(grep -rnE '#include\s+"[^"]*proto/' src/core src/transport); then
    say "the core or a transport includes a pattern's header:"; echo "$hits" >&2
fi
if hits=$(grep -rnE '#include\s+"[^"]*transport/' src/core src/proto); then
    say "the core or a pattern includes a transport's header:"; echo "$hits" >&2
fi
if hits=$(grep -rnE '#include\s+"' src/proxy | grep -v '#include "ferry.h"'); then
    say "the proxy includes more than the public header (it is built on the public API):"; echo "$hits" >&2
fi
if hits=$(grep -rnE '\b(pthread_create|epoll_wait|epoll_create1?)\(' src | grep -vE '^src/core/(loop|poller).c:'); then
    say "a thread or an epoll set outside the event loop (src/core/loop.c):"; echo "$hits" >&2
fi
if hits=$(grep -rnE '\bfy_futex_wait\(' src | grep -vE '^src/(core/socket.c|platform/linux/futex.c|core/fy.h|prim/sem.c):'); then
    say "a sleep on a wake word outside fy_sock_wait (src/core/socket.c):"; echo "$hits" >&2
fi
[ $fail = 0 ] && echo "layering: ok"
exit $fail
