#!/usr/bin/env bash
# ferry-ctl.sh start|stop|reset PORT: a `ferry serve` on 127.0.0.1:PORT with its
# state in $FERRY_BENCH_STATE/ferry-PORT and its pid in $FERRY_BENCH_STATE/ferry-PORT.pid;
# the RESET_CMD/PIDFILE pair that ../shared/bench/compare.sh expects.
set -euo pipefail
cmd=$1 port=${2:-5002}
S=${FERRY_BENCH_STATE:?set FERRY_BENCH_STATE}
FERRY=${FERRY:?set FERRY to the ferry binary}
mkdir -p "$S"
root=$S/ferry-$port pidf=$S/ferry-$port.pid
stop() {
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        p=$(cat "$pidf"); kill "$p"
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidf"
}
start() {
    setsid "$FERRY" -q serve --state "$root" --listen "127.0.0.1:$port" >>"$S/ferry-$port.log" 2>&1 </dev/null &
    echo $! >"$pidf"
    for _ in $(seq 1 100); do curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/v2/" && return 0; sleep 0.1; done
    echo "ferry on $port did not come up" >&2
    return 1
}
case $cmd in
    start) start ;;
    stop) stop ;;
    reset) stop; rm -rf "$root"; start ;;
    *) echo "usage: $0 start|stop|reset PORT" >&2; exit 2 ;;
esac
