#!/usr/bin/env bash
# The issue's memcached comparison: memaslap (Debian ships it as `memcaslap`, package libmemcached-tools) against
# twemproxy and ferrule (one worker) in front of the same two memcached, alternating which proxy goes first in each
# round. memaslap's default mix (9 gets to 1 set, 32-byte values here), 50 concurrent connections on one thread.
# Prints every run and the medians, with each proxy's CPU time per operation and the machine's.
#
# Usage: scripts/bench-memaslap.sh [ROUNDS]      (default 6; about 12 s per round)
# Environment: SECONDS_PER_RUN (default 5), CLIENTS (default 50), LOADGEN_CPU (default 0), PROXY_CPU (default 1),
#   BACKEND_CPUS (default: every CPU, so the backends float), BUSY_POLL_US (ferrule's proxy.busy_poll_us,
#   default 0), CARGO_TARGET_DIR. Needs memcached, memcaslap (or memaslap) and nutcracker; builds ferrule in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-6}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
CLIENTS="${CLIENTS:-50}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
BACKEND_CPUS="${BACKEND_CPUS:-0-$(($(nproc) - 1))}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
MEMASLAP=$(command -v memcaslap || command -v memaslap || true)
[ -n "$MEMASLAP" ] || { echo "bench-memaslap.sh: memaslap not found (apt-get install -y libmemcached-tools)" >&2; exit 1; }
for tool in memcached nutcracker; do
    command -v "$tool" >/dev/null || { echo "bench-memaslap.sh: $tool not found (apt-get install -y memcached nutcracker)" >&2; exit 1; }
done
cargo build --release -q --bin ferrule
FERRULE="${CARGO_TARGET_DIR:-target}/release/ferrule"

# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR
alloc_ports R1 R2
for p in "$R1" "$R2"; do
    taskset -c "$BACKEND_CPUS" memcached -p "$p" -l 127.0.0.1 -U 0 -t 1 -u root >/dev/null 2>&1 &
    PIDS+=("$!")
done
wait_port "$R1" "${PIDS[0]}" && wait_port "$R2" "${PIDS[1]}" || { echo "a backend did not start" >&2; exit 1; }
start_proxy_pair "$PROXY_CPU" memcache "$DIR" "$R1" "$R2"

echo "round,proxy,ops_per_s,proxy_cpu_us_per_op,machine_cpu_us_per_op,context_switches_per_op"
RUNS="$DIR/runs.csv"
for round in $(seq "$ROUNDS"); do
    order="twemproxy ferrule"
    [ $((round % 2)) = 0 ] && order="ferrule twemproxy"
    for proxy in $order; do
        if [ "$proxy" = twemproxy ]; then port=$TW; pid=$TW_PID; else port=$FE; pid=$FE_PID; fi
        t0=$(proc_cpu_ticks "$pid"); b0=$(machine_busy_ticks); c0=$(context_switches)
        out=$(taskset -c "$LOADGEN_CPU" "$MEMASLAP" -s "127.0.0.1:$port" -T 1 -c "$CLIENTS" -X 32 \
            -t "${SECONDS_PER_RUN}s" 2>&1)
        t1=$(proc_cpu_ticks "$pid"); b1=$(machine_busy_ticks); c1=$(context_switches)
        # The summary line: "Run time: 5.0s Ops: 123 TPS: 456 Net_rate: ..." (memaslap has no percentiles; latency
        # percentiles for memcached come from scripts/bench.sh).
        ops=$(echo "$out" | awk '/^Run time:/ {for (i = 1; i <= NF; i++) if ($i == "Ops:") print $(i+1)}')
        tps=$(echo "$out" | awk '/^Run time:/ {for (i = 1; i <= NF; i++) if ($i == "TPS:") print $(i+1)}')
        if [ -z "$ops" ] || [ "$ops" = 0 ]; then
            echo "bench-memaslap.sh: memaslap against $proxy reported nothing:" >&2
            echo "$out" | tail -5 >&2
            exit 1
        fi
        row=$(awk -v r="$round" -v x="$proxy" -v tps="$tps" -v n="$ops" -v hz="$CLK_TCK" \
            -v pc=$((t1 - t0)) -v mc=$((b1 - b0)) -v cs=$((c1 - c0)) \
            'BEGIN {printf "%s,%s,%s,%.2f,%.2f,%.2f", r, x, tps, pc*1e6/hz/n, mc*1e6/hz/n, cs/n}')
        echo "$row" | tee -a "$RUNS"
    done
done

echo
echo "medians over $ROUNDS rounds (ratio = ferrule / twemproxy):"
for col in 3 4 5 6; do
    for proxy in twemproxy ferrule; do
        v=$(awk -F, -v x="$proxy" -v c="$col" '$2==x {print $c}' "$RUNS" | median)
        printf -v "m_${proxy}_$col" '%s' "$v"
    done
done
awk -v tr="$m_twemproxy_3" -v fr="$m_ferrule_3" -v tc="$m_twemproxy_4" -v fc="$m_ferrule_4" \
    -v tm="$m_twemproxy_5" -v fm="$m_ferrule_5" -v ts="$m_twemproxy_6" -v fs="$m_ferrule_6" \
    'BEGIN {printf "memaslap get/set 9:1: ops/s twemproxy %.0f ferrule %.0f (%.2fx) | proxy CPU us/op %s vs %s | machine CPU us/op %s vs %s | context switches/op %s vs %s\n", tr, fr, fr/tr, tc, fc, tm, fm, ts, fs}'
