#!/usr/bin/env bash
# The issue's redis comparison, with redis-benchmark instead of ferrule-loadgen: twemproxy and ferrule (one worker)
# in front of the same two redis-servers, `redis-benchmark -c 50 -t get|set -P 1|16`, alternating which proxy goes
# first in each round, several rounds. Prints every run and then the medians, with each proxy's CPU time per request
# (from /proc/PID/stat) and the whole machine's CPU time and context switches per request (from /proc/stat).
#
# Usage: scripts/bench-redis-benchmark.sh [ROUNDS]      (default 8; about 40 s per round)
# Environment: N (requests per run, default 300000), CLIENTS (default 50), PIPELINES (default "1 16"),
#   TESTS (default "get set"), LOADGEN_CPU (default 0), PROXY_CPU (default 1), BACKEND_CPUS (default: every CPU, so
#   the backends float), BUSY_POLL_US (ferrule's proxy.busy_poll_us, default 0), CARGO_TARGET_DIR, FERRULE (a ferrule
#   binary to run instead of building this tree's, e.g. the build before a change).
# Needs redis-server, redis-benchmark (package redis-tools) and nutcracker; builds ferrule in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-8}"
N="${N:-300000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
TESTS="${TESTS:-get set}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
BACKEND_CPUS="${BACKEND_CPUS:-0-$(($(nproc) - 1))}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
need_tools "apt-get install -y redis-server redis-tools nutcracker" redis-server redis-benchmark nutcracker
ensure_ferrule

DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR
start_redis_pair "$BACKEND_CPUS"
start_proxy_pair "$PROXY_CPU" redis "$DIR" "$R1" "$R2"

echo "round,P,test,proxy,ops_per_s,p50_ms,p99_ms,proxy_cpu_us_per_req,machine_cpu_us_per_req,context_switches_per_req"
RUNS="$DIR/runs.csv"
for round in $(seq "$ROUNDS"); do
    for P in $PIPELINES; do
        for t in $TESTS; do
            order="twemproxy ferrule"
            [ $((round % 2)) = 0 ] && order="ferrule twemproxy"
            for proxy in $order; do
                if [ "$proxy" = twemproxy ]; then port=$TW; pid=$TW_PID; else port=$FE; pid=$FE_PID; fi
                t0=$(proc_cpu_ticks "$pid"); b0=$(machine_busy_ticks); c0=$(context_switches)
                line=$(taskset -c "$LOADGEN_CPU" redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$P" -t "$t" \
                    -d 32 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"')
                t1=$(proc_cpu_ticks "$pid"); b1=$(machine_busy_ticks); c1=$(context_switches)
                # redis-benchmark --csv: test,rps,avg,min,p50,p95,p99,max
                row=$(echo "$line" | awk -F, -v r="$round" -v P="$P" -v t="$t" -v x="$proxy" -v n="$N" -v hz="$CLK_TCK" \
                    -v pc=$((t1 - t0)) -v mc=$((b1 - b0)) -v cs=$((c1 - c0)) \
                    '{printf "%s,%s,%s,%s,%.0f,%s,%s,%.2f,%.2f,%.2f", r, P, t, x, $2, $5, $7, pc*1e6/hz/n, mc*1e6/hz/n, cs/n}')
                echo "$row" | tee -a "$RUNS"
            done
        done
    done
done

echo
echo "medians over $ROUNDS rounds (ratio = ferrule / twemproxy):"
for P in $PIPELINES; do
    for t in $TESTS; do
        for col in 5 6 7 8 9 10; do
            for proxy in twemproxy ferrule; do
                v=$(awk -F, -v P="$P" -v t="$t" -v x="$proxy" -v c="$col" '$2==P && $3==t && $4==x {print $c}' "$RUNS" | median)
                printf -v "m_${proxy}_$col" '%s' "$v"
            done
        done
        awk -v P="$P" -v t="$t" -v tr="$m_twemproxy_5" -v fr="$m_ferrule_5" -v t50="$m_twemproxy_6" -v f50="$m_ferrule_6" \
            -v t99="$m_twemproxy_7" -v f99="$m_ferrule_7" -v tc="$m_twemproxy_8" -v fc="$m_ferrule_8" \
            -v tm="$m_twemproxy_9" -v fm="$m_ferrule_9" -v ts="$m_twemproxy_10" -v fs="$m_ferrule_10" \
            'BEGIN {printf "%s P=%s: ops/s twemproxy %.0f ferrule %.0f (%.2fx) | p50 ms %s vs %s | p99 ms %s vs %s | proxy CPU us/req %s vs %s | machine CPU us/req %s vs %s | context switches/req %s vs %s\n", toupper(t), P, tr, fr, fr/tr, t50, f50, t99, f99, tc, fc, tm, fm, ts, fs}'
    done
done
