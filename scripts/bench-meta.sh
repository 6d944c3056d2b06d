#!/usr/bin/env bash
# memcached's meta commands beside the text protocol, in one run: ferrule-loadgen in `memcache` (get/set) and
# `memcache-meta` (mg/ms) mode against one memcached directly, twemproxy and ferrule (one worker each, in front of
# the same two memcached servers). twemproxy does not speak the meta protocol (twemproxy #585): its meta cells are
# left empty. Closed loop (throughput), alternating the order of the targets each round; prints every run and the
# medians as a markdown table (docs/benchmarks.md).
#
# Usage: scripts/bench-meta.sh [ROUNDS]       (default 3; about 16 s per target and protocol per round)
# Environment: DURATION (seconds per run, default 2), CONNECTIONS (default 50), LOADGEN_CPU (default 0),
#   PROXY_CPU (default 1), BACKEND_CPUS (default: every CPU), CARGO_TARGET_DIR. Needs memcached and nutcracker;
#   builds ferrule and ferrule-loadgen in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
DURATION="${DURATION:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
BACKEND_CPUS="${BACKEND_CPUS:-0-$(($(nproc) - 1))}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
for tool in memcached nutcracker jq; do
    command -v "$tool" >/dev/null || { echo "bench-meta.sh: $tool not found (apt-get install -y memcached nutcracker jq)" >&2; exit 1; }
done
cargo build --release -q -p ferrule -p ferrule-loadgen
FERRULE="${CARGO_TARGET_DIR:-target}/release/ferrule"
LOADGEN="${CARGO_TARGET_DIR:-target}/release/ferrule-loadgen"

# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR
alloc_ports M1 M2
for p in "$M1" "$M2"; do
    taskset -c "$BACKEND_CPUS" memcached -u nobody -p "$p" -l 127.0.0.1 -U 0 -m 256 >/dev/null 2>&1 &
    PIDS+=("$!")
done
wait_port "$M1" "${PIDS[0]}" && wait_port "$M2" "${PIDS[1]}" || { echo "a memcached did not start" >&2; exit 1; }
start_proxy_pair "$PROXY_CPU" memcache "$DIR" "$M1" "$M2"

# name|loadgen arguments (after --protocol and --target)
WORKLOADS=(
    "get P=1|-P 1 --ratio 0:1"
    "get P=16|-P 16 --ratio 0:1"
    "set P=16|-P 16 --ratio 1:0"
    "10-key get P=1|-P 1 --ratio 0:1 --mget 10"
)
COMMON="-c $CONNECTIONS --keys 100000 --value-size 32 --duration $DURATION --cpus $LOADGEN_CPU -q --json -"
# Every key once, so reads hit (through ferrule, which spreads them over both servers, and on memcached 1).
for port in "$M1" "$FE"; do
    taskset -c "$LOADGEN_CPU" "$LOADGEN" --protocol memcache --target "127.0.0.1:$port" -c 8 -P 32 --keys 100000 \
        --value-size 32 --ratio 1:0 --requests 100000 --cpus "$LOADGEN_CPU" -q --json - >/dev/null 2>&1
done

RUNS="$DIR/runs.csv"
echo "round,workload,protocol,target,ops_per_s,p50_ms,p99_ms,errors"
for round in $(seq "$ROUNDS"); do
    for w in "${WORKLOADS[@]}"; do
        name="${w%%|*}"
        args="${w#*|}"
        targets="direct twemproxy ferrule"
        [ $((round % 2)) = 0 ] && targets="ferrule twemproxy direct"
        for protocol in memcache memcache-meta; do
            for target in $targets; do
                [ "$target" = twemproxy ] && [ "$protocol" = memcache-meta ] && continue
                case "$target" in direct) port=$M1 ;; twemproxy) port=$TW ;; ferrule) port=$FE ;; esac
                # shellcheck disable=SC2086
                json=$(taskset -c "$LOADGEN_CPU" "$LOADGEN" --protocol "$protocol" --target "127.0.0.1:$port" \
                    $args $COMMON 2>/dev/null)
                row=$(echo "$json" | jq -r --arg r "$round" --arg w "$name" --arg p "$protocol" --arg t "$target" \
                    '[$r, $w, $p, $t, (.totals.ops_per_sec | floor), .totals.latency_ms.p50, .totals.latency_ms.p99,
                      .totals.errors] | @csv' | tr -d '"')
                echo "$row" | tee -a "$RUNS"
            done
        done
    done
done

echo
echo "medians over $ROUNDS rounds, ops/s (p50 / p99 ms); twemproxy does not speak meta (twemproxy #585):"
echo
echo "| workload | direct text | direct meta | twemproxy text | twemproxy meta | ferrule text | ferrule meta |"
echo "|---|---|---|---|---|---|---|"
for w in "${WORKLOADS[@]}"; do
    name="${w%%|*}"
    line="| $name |"
    for target in direct twemproxy ferrule; do
        for protocol in memcache memcache-meta; do
            if [ "$target" = twemproxy ] && [ "$protocol" = memcache-meta ]; then
                line="$line n/a (no meta support) |"
                continue
            fi
            pick() { awk -F, -v w="$name" -v p="$protocol" -v t="$target" -v c="$1" '$2==w && $3==p && $4==t {print $c}' "$RUNS" | median; }
            line="$line $(printf '%.0f' "$(pick 5)") ($(pick 6) / $(pick 7)) |"
        done
    done
    echo "$line"
done
