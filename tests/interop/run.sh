#!/bin/bash
# run.sh - the ZMTP interoperability suite: ferry against pyzmq and against
# libzmq in C, every pattern, tcp:// and ipc://, each side binding in turn.
#
#   run.sh FERRY_PEER ZMQ_PEER ZPEER_PY [quick|full] [FERRY_CLI]
#
# FERRY_PEER and ZMQ_PEER are tests/interop/peer.c built against ferry and
# against libzmq; ZPEER_PY is tests/interop/zpeer.py (run with
# /usr/bin/python3, where Debian's python3-zmq lives). Each case starts the
# binding side, reads the endpoint it prints (the port it got), starts the
# connecting side, and requires both to exit 0 (a publisher, which runs
# until stopped, is stopped once its subscriber is satisfied).
set -u
set -f # no pathname expansion: commands are built as strings, and a Z85 key may hold * ? [
FP=$1
ZP=$2
PY="/usr/bin/python3 $3"
MODE=${4:-full}
CLI=${5:-}
SEQ=100000
IMPLS="pyzmq libzmq"
if [ "$MODE" = quick ]; then # under sanitizers: the slowness says nothing
    SEQ=10000
    IMPLS=libzmq
fi
TMP=$(mktemp -d /tmp/ferry-interop.XXXXXX)
pids=()
MAIN=$BASHPID
cleanup() {
    [ "$BASHPID" = "$MAIN" ] || return 0 # subshells ($(...), watchdogs) inherit the trap
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
failed=0
cases=0
n=0

# start CMD...: runs it in the background with stdout on a fifo we keep
# open; sets $spid and $sfd
start() {
    n=$((n + 1))
    local fifo=$TMP/out.$n
    mkfifo "$fifo"
    "$@" >"$fifo" 2>"$TMP/err.$n" &
    spid=$!
    pids+=("$spid")
    exec {sfd}<"$fifo"
    serr=$TMP/err.$n
}

# endpoint: the ENDPOINT line of the last started binder
endpoint() {
    local line
    if ! read -r -t 20 line <&"$sfd"; then
        echo ""
        return
    fi
    echo "${line#ENDPOINT }"
}

# waitfor PID SECONDS: the exit status, or 124 when it had to be killed
# after SECONDS. The watchdog's output goes to /dev/null so that it never
# holds ctest's output pipe, and it is killed with its sleep when done.
waitfor() {
    local pid=$1 secs=$2
    (
        sleep "$secs"
        kill -9 "$pid"
    ) >/dev/null 2>&1 &
    local wd=$!
    wait "$pid" 2>/dev/null
    local rc=$?
    pkill -9 -P "$wd" 2>/dev/null
    kill -9 "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null
    [ $rc -eq 137 ] && rc=124
    return $rc
}

T0=$(date +%s%N)
report() { # name rc errfile...
    local name=$1 rc=$2
    shift 2
    cases=$((cases + 1))
    local t1
    t1=$(date +%s%N)
    local ms=$(((t1 - T0) / 1000000))
    T0=$t1
    if [ "$rc" -eq 0 ]; then
        echo "ok    $name (${ms} ms)"
    else
        echo "FAIL  $name (exit $rc)"
        for f in "$@"; do sed 's/^/      /' "$f"; done
        failed=$((failed + 1))
    fi
}

# one_case NAME BINDER_CMD CONNECTOR_CMD URL INFINITE [COUNT]
# INFINITE: "binder" or "connector" if that side runs until stopped.
one_case() {
    local name=$1 bcmd=$2 ccmd=$3 url=$4 inf=$5 count=${6:-}
    start $bcmd bind "$url" $count
    local bpid=$spid bfd=$sfd berr=$serr
    local ep
    ep=$(endpoint)
    if [ -z "$ep" ]; then
        report "$name" 99 "$berr"
        kill -9 $bpid 2>/dev/null
        exec {bfd}<&-
        return
    fi
    start $ccmd connect "$ep" $count
    local cpid=$spid cfd=$sfd cerr=$serr
    local brc=0 crc=0
    case $inf in
    binder)
        waitfor $cpid 90
        crc=$?
        kill -9 $bpid 2>/dev/null
        wait $bpid 2>/dev/null
        ;;
    connector)
        waitfor $bpid 90
        brc=$?
        kill -9 $cpid 2>/dev/null
        wait $cpid 2>/dev/null
        ;;
    *)
        waitfor $cpid 90
        crc=$?
        waitfor $bpid 30
        brc=$?
        ;;
    esac
    exec {bfd}<&- {cfd}<&-
    report "$name" $((brc > crc ? brc : crc)) "$berr" "$cerr"
}

# pattern_cases IMPL_NAME IMPL_CMD TRANSPORT URL
pattern_cases() {
    local impl=$1 z=$2 tr=$3 url=$4
    # ferry role | zmq role | which one runs forever | extra args
    local spec
    for spec in "rep req - " "req rep - " "pair-echo pair-req - " "pair-req pair-echo - " \
        "push pull - $SEQ" "pull push - $SEQ" "pub sub ferry " "sub pub zmq " \
        "dealer-req rep - " "rep dealer-req - " "router-echo dealer - " \
        "dealer router-echo - " "router-echo req - " "req router-echo - "; do
        set -- $spec
        local fr=$1 zr=$2 inf=$3 count=${4:-}
        # ferry binds
        local which=-
        [ "$inf" = ferry ] && which=binder
        [ "$inf" = zmq ] && which=connector
        one_case "$tr ferry $fr (bind) <-> $impl $zr (connect)" "$FP $fr" "$z $zr" \
            "$url" "$which" $count
        # zmq binds
        which=-
        [ "$inf" = ferry ] && which=connector
        [ "$inf" = zmq ] && which=binder
        one_case "$tr $impl $zr (bind) <-> ferry $fr (connect)" "$z $zr" "$FP $fr" \
            "$url" "$which" $count
    done
}

# A zmq REP serves 50 requests and SIGKILLs itself; a new one binds the
# same address; ferry's REQ (dialing) must get every reply: it sees the
# connection die, resends, and its dialer reconnects.
reconnect_case() {
    local tr=$1 url=$2
    start $PY rep-die bind "$url" 50
    local r1=$spid r1fd=$sfd r1err=$serr
    [ -n "$(endpoint)" ] || { report "$tr reconnect" 99 "$r1err"; return; }
    start $FP req-retry connect "$url" 200
    local f=$spid ffd=$sfd ferr=$serr
    wait $r1 2>/dev/null # it kills itself after 50 replies
    start $PY rep bind "$url" 1000
    local r2=$spid r2fd=$sfd r2err=$serr
    endpoint >/dev/null
    waitfor $f 60
    local rc=$?
    kill -9 $r2 2>/dev/null
    wait $r2 2>/dev/null
    exec {r1fd}<&- {ffd}<&- {r2fd}<&-
    report "$tr pyzmq REP killed with SIGKILL and restarted <-> ferry REQ reconnects" $rc \
        "$ferr" "$r2err"
}

# A zmq peer of an incompatible type: refused, counted, never a peer.
refusal_case() {
    local tr=$1 url=$2
    start env PEER_TYPE=5 $FP refused bind "$url"
    local f=$spid ffd=$sfd ferr=$serr
    local ep
    ep=$(endpoint)
    start env ZPEER_TYPE=PUSH $PY sender connect "$ep" 20000
    local z=$spid zfd=$sfd
    waitfor $f 20
    local rc=$?
    kill -9 $z 2>/dev/null
    wait $z 2>/dev/null
    exec {ffd}<&- {zfd}<&-
    report "$tr ferry REP (bind) refuses a pyzmq PUSH" $rc "$ferr"

    start env ZPEER_TYPE=REP $PY sender bind "$url" 20000
    z=$spid
    zfd=$sfd
    ep=$(endpoint)
    start env PEER_TYPE=6 $FP refused connect "$ep"
    f=$spid
    ffd=$sfd
    ferr=$serr
    waitfor $f 20
    rc=$?
    kill -9 $z 2>/dev/null
    wait $z 2>/dev/null
    exec {ffd}<&- {zfd}<&-
    report "$tr ferry PUSH (connect) refuses a pyzmq REP" $rc "$ferr"
}

# A pyzmq PUSH sends multipart messages; `ferry recv --format json` must
# show each one's parts (checked by zpeer.py parts-check).
parts_case() {
    local tr=$1 url=$2
    start $PY push-parts bind "$url"
    local z=$spid zfd=$sfd zerr=$serr
    local ep
    ep=$(endpoint)
    [ -n "$ep" ] || { report "$tr pyzmq PUSH multipart -> ferry recv --format json" 99 "$zerr"; return; }
    "$CLI" recv --connect "$ep" --type pull -n 4 --format json --timeout 20000 \
        >"$TMP/parts.out" 2>"$TMP/parts.err"
    local rc=$?
    [ $rc -eq 0 ] && { $PY parts-check file "$TMP/parts.out" 2>>"$TMP/parts.err"; rc=$?; }
    waitfor $z 20
    local zrc=$?
    exec {zfd}<&-
    report "$tr pyzmq PUSH multipart -> ferry recv --format json" $((rc > zrc ? rc : zrc)) \
        "$TMP/parts.err" "$zerr" "$TMP/parts.out"
}

# Routing ids set by either side: a DEALER with ROUTING_ID, a ROUTER that
# requires every message to carry it.
rid_case() {
    local tr=$1 url=$2
    one_case "$tr ferry ROUTER (bind) sees pyzmq DEALER's routing id" \
        "env EXPECT_RID=zdealer $FP router-echo" "env ROUTING_ID=zdealer $PY dealer" "$url" -
    one_case "$tr pyzmq ROUTER (bind) sees ferry DEALER's routing id" \
        "env EXPECT_RID=fdealer $PY router-echo" "env ROUTING_ID=fdealer $FP dealer" "$url" -
}

# ROUTER_MANDATORY to a peer that left (EHOSTUNREACH), each side the
# ROUTER; and XPUB_WELCOME_MSG received by a pyzmq SUB that subscribed to it.
router_xpub_cases() {
    local tr=$1 url=$2 impl z
    for impl in $IMPLS; do
        if [ $impl = pyzmq ]; then z="$PY"; else z="$ZP"; fi
        one_case "$tr ferry ROUTER_MANDATORY (bind) -> $impl DEALER that left: EHOSTUNREACH" \
            "$FP router-mandatory" "$z dealer-bye" "$url" -
        one_case "$tr $impl ROUTER_MANDATORY (bind) -> ferry DEALER that left: EHOSTUNREACH" \
            "$z router-mandatory" "$FP dealer-bye" "$url" -
    done
    one_case "$tr ferry XPUB_WELCOME_MSG (bind) -> pyzmq SUB subscribed to it" \
        "$FP xpub-welcome" "$PY sub-welcome" "$url" -
    one_case "$tr pyzmq SUB (bind) <- ferry XPUB_WELCOME_MSG (connect)" \
        "$PY sub-welcome" "$FP xpub-welcome" "$url" -
}

# CURVE both ways round: ferry the server (admitting the client's key) and
# the zmq side the client, then the zmq side the server and ferry the
# client; every pattern, SEQ sequenced messages each way over PUSH/PULL.
curve_cases() {
    local tr=$1 url=$2 impl=$3 z=$4
    local keys
    keys=$(/usr/bin/python3 -c 'import zmq; a = zmq.curve_keypair(); b = zmq.curve_keypair(); print(a[0].decode(), a[1].decode(), b[0].decode(), b[1].decode())')
    set -- $keys
    local spub=$1 ssec=$2 cpub=$3 csec=$4
    local srv="env CURVE_SERVER=$ssec CURVE_ALLOW=$cpub"
    local cli="env CURVE_CLIENT=$csec CURVE_SERVERKEY=$spub"
    local spec
    for spec in "rep req - " "req rep - " "push pull - $SEQ" "pull push - $SEQ" "pub sub ferry " \
        "sub pub zmq " "router-echo dealer - " "dealer router-echo - "; do
        set -- $spec
        local fr=$1 zr=$2 inf=$3 count=${4:-} which=-
        [ "$inf" = ferry ] && which=binder
        [ "$inf" = zmq ] && which=connector
        one_case "$tr CURVE ferry $fr (bind, server) <-> $impl $zr (connect, client)" \
            "$srv $FP $fr" "$cli $z $zr" "$url" "$which" $count
        which=-
        [ "$inf" = ferry ] && which=connector
        [ "$inf" = zmq ] && which=binder
        one_case "$tr CURVE $impl $zr (bind, server) <-> ferry $fr (connect, client)" \
            "$srv $z $zr" "$cli $FP $fr" "$url" "$which" $count
    done
}

# A pyzmq client whose key ferry does not admit: ERROR 400 (pyzmq sees an
# authentication failure), counted as refused. One that knows the wrong
# server key: its HELLO does not open, the handshake fails, counted as bad
# input.
curve_refusal_cases() {
    local tr=$1 url=$2 keys
    keys=$(/usr/bin/python3 -c 'import zmq; k = [zmq.curve_keypair() for _ in range(3)]; print(" ".join(x.decode() for p in k for x in p))')
    set -- $keys
    local spub=$1 ssec=$2 cpub=$3 csec=$4 opub=$5
    local want=$opub # the list holds another key
    local case_
    for case_ in denied fails; do
        local env_s="CURVE_SERVER=$ssec CURVE_ALLOW=$want EXPECT_COUNTER=refused" role=curve-denied
        local why="not on the allow list" skey=$spub
        if [ $case_ = fails ]; then
            env_s="CURVE_SERVER=$ssec CURVE_ALLOW=$cpub"
            why="wrong server key"
            skey=$opub
            role=curve-fails
        fi
        start env $env_s EXPECT_WHY="$why" PEER_TYPE=7 $FP refused bind "$url"
        local f=$spid ffd=$sfd ferr=$serr
        local ep
        ep=$(endpoint)
        start env CURVE_CLIENT=$csec CURVE_SERVERKEY=$skey $PY $role connect "$ep"
        local z=$spid zfd=$sfd zerr=$serr
        waitfor $f 20
        local rc=$?
        waitfor $z 20
        local zrc=$?
        exec {ffd}<&- {zfd}<&-
        report "$tr CURVE pyzmq client $case_ ($why)" $((rc > zrc ? rc : zrc)) "$ferr" "$zerr"
    done
}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for tr in tcp ipc; do
    if [ $tr = tcp ]; then url="tcp://127.0.0.1:*"; else url="ipc://$TMP/sock"; fi
    for impl in $IMPLS; do
        if [ $impl = pyzmq ]; then z="$PY"; else z="$ZP"; fi
        pattern_cases $impl "$z" $tr "$url"
    done
done

reconnect_case tcp "tcp://127.0.0.1:$(free_port)"
reconnect_case ipc "ipc://$TMP/reconnect.sock"
rid_case tcp "tcp://127.0.0.1:*"
rid_case ipc "ipc://$TMP/rid.sock"
router_xpub_cases tcp "tcp://127.0.0.1:*"
router_xpub_cases ipc "ipc://$TMP/rx.sock"
refusal_case tcp "tcp://127.0.0.1:*"
refusal_case ipc "ipc://$TMP/refuse.sock"
for impl in $IMPLS; do
    if [ $impl = pyzmq ]; then z="$PY"; else z="$ZP"; fi
    curve_cases tcp "tcp://127.0.0.1:*" $impl "$z"
done
curve_cases ipc "ipc://$TMP/curve.sock" libzmq "$ZP"
[ "$MODE" = quick ] || curve_refusal_cases tcp "tcp://127.0.0.1:*"
if [ -n "$CLI" ]; then
    parts_case tcp "tcp://127.0.0.1:*"
    parts_case ipc "ipc://$TMP/parts.sock"
fi

echo "$cases cases, $failed failed"
[ $failed -eq 0 ]
