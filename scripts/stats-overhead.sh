#!/usr/bin/env bash
# Throughput of one ferrule release binary with per-request stats on (proxy.stats = true) and off, measured with
# redis-benchmark in interleaved rounds (on/off, then off/on, ...) so that drifts of the machine hit both alike.
#
#   scripts/stats-overhead.sh [--rounds N] [--requests N] [--pipeline P] [--bin PATH]
#
# Placement: ferrule's worker on CPU 0 (proxy.cpus), redis-server and redis-benchmark on CPU 1. Besides the rate,
# each run reports the CPU time the worker thread used per request (from /proc/PID/task/TID/schedstat).
# Set NICE=-10 (as root) to raise the priority of everything measured on a shared machine.
# Prints one line per run, then medians per mode and the on/off ratio. See docs/benchmarks.md.
set -euo pipefail

ROUNDS=11
REQUESTS=600000
PIPELINE=16
BIN=target/release/ferrule
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--requests N] [--pipeline P] [--bin PATH]" >&2; exit 1 ;;
    esac
done
for tool in redis-server redis-benchmark redis-cli taskset; do
    command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN not found: cargo build --release --bin ferrule" >&2; exit 1; }
NICE=${NICE:-0}
run() { nice -n "$NICE" "$@"; }

DIR=$(mktemp -d /tmp/ferrule-stats-overhead.XXXX)
BASE=$((20000 + RANDOM % 20000))
REDIS=$BASE
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
}
trap cleanup EXIT

run taskset -c 1 redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$DIR/redis.pid" --dir "$DIR" >/dev/null
for _ in $(seq 50); do redis-cli -p $REDIS ping >/dev/null 2>&1 && break; sleep 0.1; done

# start_ferrule MODE PORT ADMIN_PORT STATS
start_ferrule() {
    cat >"$DIR/$1.toml" <<EOF
[proxy]
workers = 1
cpus = [0]
admin = "127.0.0.1:$3"
stats = $4

[listeners.cache]
listen = "127.0.0.1:$2"
protocol = "redis"
route = "main"

[pools.main]
servers = ["127.0.0.1:$REDIS:1"]
EOF
    # nice execs ferrule, so $! is ferrule's pid.
    RUST_LOG=warn nice -n "$NICE" "$BIN" -c "$DIR/$1.toml" --no-watch 2>"$DIR/$1.log" &
    PIDS+=($!)
    echo $! >"$DIR/$1.pid"
}
start_ferrule on $((BASE + 1)) $((BASE + 2)) true
start_ferrule off $((BASE + 3)) $((BASE + 4)) false
sleep 1

# CPU nanoseconds used so far by the threads of worker 0.
worker_ns() {
    for t in /proc/$1/task/*; do
        if grep -q ferrule-w0 "$t/comm"; then awk '{print $1}' "$t/schedstat"; fi
    done | awk '{s += $1} END {printf "%.0f\n", s}'
}

RESULTS="$DIR/results.txt"
for r in $(seq 1 "$ROUNDS"); do
    order="on off"
    [ $((r % 2)) = 0 ] && order="off on"
    for mode in $order; do
        port=$([ "$mode" = on ] && echo $((BASE + 1)) || echo $((BASE + 3)))
        pid=$(cat "$DIR/$mode.pid")
        for test in set get; do
            c0=$(worker_ns "$pid")
            rps=$(run taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$REQUESTS" -P "$PIPELINE" \
                -t $test -d 32 -r 100000 -q 2>/dev/null | tr '\r' '\n' | grep "requests per second" | tail -1 |
                sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
            c1=$(worker_ns "$pid")
            echo "round=$r mode=$mode test=$test rps=$rps worker_ns_per_request=$(((c1 - c0) / REQUESTS))" |
                tee -a "$RESULTS"
        done
    done
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { grep "mode=$1 test=$2 " "$RESULTS" | sed -E "s/.* $3=([0-9.]+).*/\1/"; }
echo
echo "pipeline $PIPELINE, $REQUESTS requests per run, $ROUNDS rounds: medians"
for test in set get; do
    on=$(field on $test rps | median)
    off=$(field off $test rps | median)
    on_ns=$(field on $test worker_ns_per_request | median)
    off_ns=$(field off $test worker_ns_per_request | median)
    awk -v t=$test -v a="$on" -v b="$off" -v c="$on_ns" -v d="$off_ns" 'BEGIN {
        printf "%s: stats on %.0f req/s, off %.0f req/s, on/off %.3f; worker CPU per request on %d ns, off %d ns\n",
            t, a, b, a / b, c, d }'
done
